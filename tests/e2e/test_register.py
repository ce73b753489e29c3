"""REGISTER from digest trunks through Kamailio, stored by sipdata, and calls to their DIDs."""

from __future__ import annotations

import socket

from tests.e2e import digest_uac
from tests.e2e.conftest import ALPHA, PBX, Stack, demo_id
from tests.e2e.harness import Sipp, free_port, running
from tests.e2e.parties import caller, carrier, refused_caller

DID_OF_ACME_PBX = "12125550100"
DID_OF_UNREGISTERED_TRUNK = "442071234567"  # globex-ip: no static address, never registers


def register(
    stack: Stack, port: int, *, password: str = "acme-secret", expect: int = 200, expires: int = 300
) -> Sipp:
    return Sipp(
        "register",
        stack.workdir,
        ip=PBX,
        port=port,
        target=stack.target,
        service="acme-pbx",
        args=["-au", "acme-pbx", "-ap", password],
        replace={"EXPECTED_CODE": str(expect), "EXPIRES": str(expires)},
        name=f"register_{expect}_{expires}",
    )


def test_md5_register_is_stored_and_visible_through_sipdata(stack: Stack) -> None:
    """401, then 200; sipdata shows the binding (contact, received) and the database has it."""
    port = free_port(socket.SOCK_DGRAM, PBX)
    result = register(stack, port).run()
    assert result.returncode == 0 and result.successful == 1, result.errors
    view = stack.sipdata.get("/v1/registration?username=acme-pbx")
    assert view["online"] is True
    assert view["registration"]["contact"] == f"sip:acme-pbx@{PBX}:{port}"
    assert view["registration"]["received"] == f"sip:{PBX}:{port}"
    assert view["registration"]["user_agent"] == "sipdata-e2e-pbx"
    (row,) = stack.sql(
        "SELECT status, contact FROM trunk_registrations WHERE trunk_id = $1",
        demo_id("trunk:acme-pbx"),
    )
    assert row["status"] == "online" and row["contact"] == f"sip:acme-pbx@{PBX}:{port}"


def test_wrong_password_is_challenged_again_and_stores_nothing(stack: Stack) -> None:
    """A second 401, and the registration sipdata holds is not the attacker's."""
    port = free_port(socket.SOCK_DGRAM, PBX)
    result = register(stack, port, password="wrong", expect=401).run()
    assert result.returncode == 0 and result.successful == 1, result.errors
    view = stack.sipdata.get("/v1/registration?username=acme-pbx")
    reg = view["registration"]
    assert reg is None or reg["contact"] != f"sip:acme-pbx@{PBX}:{port}"


def test_sha256_register_on_a_sha256_edge(stack: Stack) -> None:
    """Kamailio started with AUTH_ALGORITHM=SHA-256 verifies sipdata's SHA-256 HA1."""
    edge = stack.another_kamailio(['AUTH_ALGORITHM="SHA-256"'])
    host, port = edge.target.split(":")
    done = digest_uac.register((host, int(port)), PBX, "acme-pbx", "acme-secret")
    assert done == digest_uac.Exchange(first=401, final=200)
    wrong = digest_uac.register((host, int(port)), PBX, "acme-pbx", "not-it")
    assert wrong == digest_uac.Exchange(first=401, final=401)
    view = stack.sipdata.get("/v1/registration?username=acme-pbx")
    assert view["registration"]["user_agent"] == "sipdata-e2e-sha256"


def test_deregistration_takes_the_trunk_offline(stack: Stack) -> None:
    """Expires 0 answers 200 and sipdata no longer holds a binding."""
    port = free_port(socket.SOCK_DGRAM, PBX)
    assert register(stack, port).run().successful == 1
    assert stack.sipdata.get("/v1/registration?username=acme-pbx")["online"] is True
    result = register(stack, port, expires=0).run()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert stack.sipdata.get("/v1/registration?username=acme-pbx")["online"] is False


def test_did_call_reaches_the_registered_contact(stack: Stack) -> None:
    """A carrier's call to acme-pbx's DID is delivered where acme-pbx registered from."""
    port = free_port(socket.SOCK_DGRAM, PBX)
    assert register(stack, port).run().successful == 1
    pbx = carrier(stack, PBX, port=port)
    with running(pbx):
        call = caller(stack, DID_OF_ACME_PBX, ALPHA).run()
        answered = pbx.wait()
    assert call.returncode == 0 and call.successful == 1, call.errors
    assert answered.successful == 1, answered.errors


def test_did_call_to_an_unregistered_trunk_gets_480(stack: Stack) -> None:
    """A carrier's call to the DID of a trunk that has not registered gets 480."""
    result = refused_caller(stack, DID_OF_UNREGISTERED_TRUNK, 480, ALPHA).run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_too_short_an_interval_gets_423_with_min_expires(stack: Stack) -> None:
    """A REGISTER below the minimum interval gets 423 with Min-Expires."""
    sipp = register(stack, free_port(socket.SOCK_DGRAM, PBX), expect=423, expires=30)
    result = sipp.run()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert "Min-Expires: 60" in sipp.messages()
