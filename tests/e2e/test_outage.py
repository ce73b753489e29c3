"""sipdata away or hung: callers get 503 (never 401/403), and nobody is banned for it."""

from __future__ import annotations

import socket

from tests.e2e.conftest import ACME_IP, BRAVO, PBX, Stack
from tests.e2e.harness import Sipp, free_port, running

LCR_NUMBER = "12125551234"


def expect(stack: Stack, code: int, name: str) -> Sipp:
    return Sipp(
        "uac_rejected",
        stack.workdir,
        ip=ACME_IP,
        target=stack.target,
        service=LCR_NUMBER,
        replace={"EXPECTED_CODE": str(code)},
        name=name,
    )


def test_sipdata_stopped_gives_503_and_no_ban(stack: Stack) -> None:
    """With sipdata down every INVITE gets 503; once it is back the same caller is routed."""
    stack.sipdata.stop()
    down = expect(stack, 503, "while_down").start()
    refused = [down.wait()] + [expect(stack, 503, f"while_down_{i}").run() for i in range(3)]
    assert all(r.returncode == 0 and r.successful == 1 for r in refused), refused[0].errors
    stack.sipdata.start()
    with running(Sipp("uas_answer", stack.workdir, ip=BRAVO, timeout_s=20)):
        back = Sipp("uac_call", stack.workdir, ip=ACME_IP, target=stack.target, service=LCR_NUMBER)
        result = back.run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_sipdata_hung_gives_503_before_the_transaction_times_out(stack: Stack) -> None:
    """A frozen sipdata accepts the connection and never answers: Kamailio's HTTP timeout
    (longer than sipdata's deadline, shorter than tm's fr_timer) turns it into 503, not 408."""
    stack.sipdata.pause()
    try:
        result = expect(stack, 503, "while_hung").run()
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
