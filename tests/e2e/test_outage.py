"""sipdata away or hung: callers get 503 (never 401/403), and nobody is banned for it."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ACME_IP, BRAVO, PBX, Stack, wait_for
from tests.e2e.harness import Kamailio, Sipdata, Sipp, free_port, running
from tests.e2e.parties import caller, carrier, refused_caller

LCR_NUMBER = "12125551234"


def test_sipdata_stopped_gives_503_and_no_ban(stack: Stack) -> None:
    """With sipdata down every INVITE gets 503; once it is back the same caller is routed."""
    stack.sipdata.stop()
    callers = [refused_caller(stack, LCR_NUMBER, 503) for _ in range(4)]
    refused = [c.run() for c in callers]
    assert all(r.returncode == 0 and r.successful == 1 for r in refused), refused[0].errors
    assert re.search(r"^Retry-After: \d+\s*$", callers[0].messages(), re.MULTILINE)
    stack.sipdata.start()
    with running(carrier(stack, BRAVO)):
        result = caller(stack, LCR_NUMBER).run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_sipdata_hung_gives_503_before_the_transaction_times_out(stack: Stack) -> None:
    """A frozen sipdata accepts the connection and never answers: Kamailio's HTTP timeout
    (longer than sipdata's deadline, shorter than tm's fr_timer) turns it into 503, not 408."""
    stack.sipdata.pause()
    try:
        result = refused_caller(stack, LCR_NUMBER, 503).run()
    finally:
        stack.sipdata.resume()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_register_while_sipdata_is_down_gets_503_not_403(stack: Stack) -> None:
    """The challenge needs no sipdata; verifying does, and its absence is 503."""
    stack.sipdata.stop()
    result = Sipp(
        "register",
        stack.workdir,
        ip=PBX,
        port=free_port(socket.SOCK_DGRAM, PBX),
        target=stack.target,
        service="acme-pbx",
        args=["-au", "acme-pbx", "-ap", "acme-secret"],
        replace={"EXPECTED_CODE": "503", "EXPIRES": "300"},
    ).run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_shared_secret_mismatch_is_503_and_the_right_secret_routes(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """sipdata with SIPDATA_API_TOKEN refuses an edge with the wrong secret; its callers get
    503 (an operator's mistake is not the caller's authentication failure)."""
    sipdata = Sipdata({**e2e_env, "SIPDATA_API_TOKEN": "s3cret"}, tmp_path / "sipdata.log")
    edges = [
        Kamailio(sipdata.url, tmp_path / name, [f'SIPDATA_SECRET="{secret}"'])
        for name, secret in (("wrong", "not-it"), ("right", "s3cret"))
    ]
    sipdata.start()
    try:
        for edge in edges:
            edge.workdir.mkdir()
            edge.start()
        wrong, right = edges
        refused = Sipp(
            "uac_rejected",
            tmp_path,
            ip=ACME_IP,
            target=wrong.target,
            service=LCR_NUMBER,
            replace={"EXPECTED_CODE": "503"},
        ).run()
        with running(Sipp("uas_answer", tmp_path, ip=BRAVO, timeout_s=20)):
            routed = Sipp(
                "uac_call", tmp_path, ip=ACME_IP, target=right.target, service=LCR_NUMBER
            ).run()
    finally:
        for edge in edges:
            edge.stop()
        sipdata.stop()
    assert refused.returncode == 0 and refused.successful == 1, refused.errors
    assert routed.returncode == 0 and routed.successful == 1, routed.errors


@pytest.mark.kamailio_defines('REPORT_RETRY_TIMER="name=reports;interval=1;mode=1;"')
def test_call_ending_while_sipdata_is_down_still_gets_its_cdr(stack: Stack) -> None:
    """The BYE's report fails while sipdata is away; Kamailio keeps it and sends it again
    once sipdata is back, so the CDR is written, rated, exactly once."""
    with running(carrier(stack, BRAVO)) as (bravo,):
        call = caller(stack, LCR_NUMBER, hold_ms=2500).start()
        time.sleep(1.0)  # answered, and the answer reported
        stack.sipdata.stop()
        result = call.wait()
        bravo.wait()
    assert result.successful == 1, result.errors
    assert not stack.cdrs(call.call_id_marker)
    kept = wait_for(lambda: stack.kamailio.rpc("htable.dump", "reports"), "the kept report")
    assert f"{call.call_id_marker[1:]}:end" in kept and "value" in kept
    stack.sipdata.start()
    (cdr,) = wait_for(lambda: stack.cdrs(call.call_id_marker), "the CDR after sipdata returns")
    assert cdr["termination_cause"] == "caller_bye" and cdr["rate"] is not None
    assert "not stored, will retry" in stack.kamailio.log()
