"""What the edge tells a caller when sipdata refuses the question, and the failed call
whose every gateway stayed silent: through the real Kamailio script and sipdata."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ACME_IP, ALPHA, BRAVO, CHARLIE, Stack, wait_for
from tests.e2e.harness import Listener
from tests.e2e.parties import refused_caller

LCR_NUMBER = "12125551234"


def invite(
    stack: Stack, user: str, call_id: str, *extra: str, from_user: str = "caller"
) -> tuple[int, str]:
    """Send one INVITE from acme-ip's address; the final reply's code and reason (the
    INVITE transaction is completed with an ACK, as a real UAC would). Text is sent
    as UTF-8, and lone surrogates ("\udcff") as the raw byte they stand for."""
    host, port = stack.target.rsplit(":", 1)
    branch = "z9hG4bK" + secrets.token_hex(8)
    head = [
        f"INVITE sip:{user}@{host} SIP/2.0",
        f"Via: SIP/2.0/UDP {ACME_IP}:{{port}};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{from_user}@{ACME_IP}>;tag=t{secrets.token_hex(4)}",
        f"To: <sip:{user}@{host}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:caller@{ACME_IP}:{{port}}>",
        *extra,
        "Content-Length: 0",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ACME_IP, 0))
        local = sock.getsockname()[1]
        message = "\r\n".join(head).replace("{port}", str(local)) + "\r\n\r\n"
        sock.settimeout(10)
        sock.sendto(message.encode("utf-8", "surrogateescape"), (host, int(port)))
        while True:
            reply = sock.recv(65535).decode(errors="replace")
            status = reply.split("\r\n", 1)[0].split(" ", 2)
            code = int(status[1])
            if code >= 200:
                break
        to = next(line for line in reply.split("\r\n") if line.lower().startswith("to:"))
        ack = [
            f"ACK sip:{user}@{host} SIP/2.0",
            f"Via: SIP/2.0/UDP {ACME_IP}:{local};branch={branch};rport",
            "Max-Forwards: 70",
            head[3],
            to,
            f"Call-ID: {call_id}",
            "CSeq: 1 ACK",
            "Content-Length: 0",
        ]
        raw_ack = ("\r\n".join(ack) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        sock.sendto(raw_ack, (host, int(port)))
    return code, status[2] if len(status) > 2 else ""


@pytest.mark.parametrize(
    ("user", "call_id", "extra", "code", "field"),
    [
        (LCR_NUMBER, "c" * 1000, (), 400, "call_id"),
        (LCR_NUMBER, "", (), 400, "call_id"),
        (
            LCR_NUMBER,
            "long-auth-user",
            (
                'Proxy-Authorization: Digest username="' + "u" * 400 + '", realm="sipdata.local", '
                'nonce="n", uri="sip:x", response="00000000000000000000000000000000"',
            ),
            400,
            "auth_user",
        ),
        ("1212abc", "bad-number", (), 484, "to"),
        ("1234567890123456789", "too-many-digits", (), 484, "to"),
    ],
    ids=[
        "1000-char-call-id",
        "empty-call-id",
        "400-char-digest-user",
        "letters-in-number",
        "20-digit-number",
    ],
)
def test_sipdata_refusals_reach_the_caller_as_what_they_are(
    stack: Stack, user: str, call_id: str, extra: tuple[str, ...], code: int, field: str
) -> None:
    """sipdata's 400 names the field it could not take: only a called number it cannot
    read is 484 Address Incomplete; a malformed Call-ID or digest username is 400 Bad
    Request (never "dial more digits"). Nothing reaches a carrier either way."""
    got, reason = invite(stack, user, call_id, *extra)
    assert got == code, reason
    if code == 400:
        assert f"sipdata refused the INVITE ({field})" in stack.kamailio.log()


# jansson logs the encoding it refused; the script's fallback is what is tested
NOT_UTF8 = pytest.mark.kamailio_log_allows("jansson_xavp2object()", "jansson_xencode()")


@NOT_UTF8
def test_a_calling_number_that_is_not_utf8_is_left_out_of_the_question(stack: Stack) -> None:
    """The question is JSON, which cannot carry those bytes: the edge drops the optional
    calling number and still asks (sipdata's own answer, 484 for a called number it
    cannot read, comes back), rather than failing the call or pasting raw bytes."""
    got, reason = invite(stack, "1212abc", "from-not-utf8", from_user="caller\udcff\udcfe")
    assert got == 484, reason
    assert "jansson_xencode()" in stack.kamailio.log()  # the first encoding was refused


@NOT_UTF8
def test_a_call_id_that_is_not_utf8_is_a_bad_request(stack: Stack) -> None:
    """A Call-ID the question cannot carry: 400 from the edge, never a 5xx or a route."""
    got, reason = invite(stack, LCR_NUMBER, "call-\udcff-id")
    assert got == 400, reason
    assert "sipdata refused the INVITE" not in stack.kamailio.log()  # the edge's own 400


@pytest.fixture
def silent_carriers() -> Iterator[list[Listener]]:
    """Every carrier gateway takes the INVITE and never answers (not even 100 Trying)."""
    listeners = [Listener(ip) for ip in (BRAVO, CHARLIE, ALPHA)]
    yield listeners
    for listener in listeners:
        listener.close()


@pytest.mark.kamailio_defines("FR_TIMER_MS=1000")
def test_a_call_no_gateway_answered_has_its_408_in_the_cdr(
    stack: Stack, silent_carriers: list[Listener]
) -> None:
    """Each gateway times out in turn and tm answers the caller 408 itself, a reply the
    dialog's failure event cannot see: the CDR still records 408, not NULL."""
    started = time.monotonic()
    call = refused_caller(stack, LCR_NUMBER, 408)
    result = call.run()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert all(listener.received() for listener in silent_carriers)  # each was tried
    (cdr,) = wait_for(lambda: stack.cdrs(call.call_id_marker), "the CDR of the failed call")
    assert (cdr["sip_response_code"], cdr["termination_cause"]) == (408, "failed")
    assert cdr["duration"] == 0 and time.monotonic() - started < 30
