"""The SIPp parties of the demo data's calls: callers, carriers, digest PBXs."""

from __future__ import annotations

from collections.abc import Sequence

from tests.e2e.conftest import ACME_IP, Stack
from tests.e2e.harness import Sipp

DIGEST_PBX_IP = "127.0.0.21"  # acme-pbx calling (it may call from anywhere)


def caller(
    stack: Stack,
    to: str,
    ip: str = ACME_IP,
    *,
    scenario: str = "uac_call",
    args: Sequence[str] = (),
    hold_ms: int = 200,
) -> Sipp:
    """A caller whose answered call lasts `hold_ms` before it sends BYE."""
    return Sipp(
        scenario,
        stack.workdir,
        ip=ip,
        port=0,
        target=stack.target,
        service=to,
        args=["-d", str(hold_ms), *args],
    )


def digest_caller(stack: Stack, to: str, password: str, scenario: str = "uac_call_auth") -> Sipp:
    """acme-pbx placing a call, answering the 407 with `password`."""
    return caller(
        stack, to, DIGEST_PBX_IP, scenario=scenario, args=["-au", "acme-pbx", "-ap", password]
    )


def refused_caller(stack: Stack, to: str, code: int, ip: str = ACME_IP) -> Sipp:
    """A caller whose INVITE must end with `code`."""
    return Sipp(
        "uac_rejected",
        stack.workdir,
        ip=ip,
        port=0,
        target=stack.target,
        service=to,
        replace={"EXPECTED_CODE": str(code)},
        name=f"uac_rejected_{code}@{ip}",
    )


def carrier(stack: Stack, ip: str, refuse: tuple[int, str] | None = None, port: int = 5060) -> Sipp:
    """A gateway (or a registered PBX) answering one call, or refusing it with `refuse`."""
    if refuse is None:
        return Sipp("uas_answer", stack.workdir, ip=ip, port=port, timeout_s=20)
    code, reason = refuse
    return Sipp(
        "uas_refuse",
        stack.workdir,
        ip=ip,
        port=port,
        timeout_s=20,
        replace={"REFUSE_CODE": str(code), "REFUSE_REASON": reason},
        name=f"uas_refuse_{code}@{ip}",
    )
