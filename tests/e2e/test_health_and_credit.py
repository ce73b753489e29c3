"""Through real Kamailio and SIPp: a carrier gateway that stops answering OPTIONS and
INVITEs is skipped without waiting for a timeout and comes back when it answers; an org
without funds gets 402; a call that outlasts its credit is ended by Kamailio on time."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.conftest import ALPHA, BRAVO, CHARLIE, Stack, demo_id, wait_for
from tests.e2e.gateway import Gateway
from tests.e2e.harness import Sipp, running
from tests.e2e.parties import caller, carrier, refused_caller

LCR_NUMBER = "12125551234"  # bravo, then charlie, then alpha (docs/api.md)
DELTA_IP = "127.0.0.12"  # delta-ip: the demo's prepaid org
PROBED = (
    "WITH_GATEWAY_PROBES",
    'GATEWAY_SYNC_TIMER="name=gateways;interval=1;mode=1;"',
    "GATEWAY_PING_S=1",
    # an OPTIONS probe unanswered for this long marks its gateway down
    "FR_TIMER_MS=1500",
    "SIPDATA_TIMEOUT_MS=1000",
)


@pytest.fixture
def gateways() -> Iterator[dict[str, Gateway]]:
    gws = {ip: Gateway(ip) for ip in (ALPHA, BRAVO, CHARLIE)}
    yield gws
    for gw in gws.values():
        gw.close()


def state(stack: Stack, ip: str) -> str | None:
    listed = stack.sipdata.get("/v1/gateways")["gateways"]
    found = [g["state"] for g in listed if g["gateway"] == f"{ip}:5060"]
    return found[0] if found else None


def first_carrier(stack: Stack) -> str:
    legs: list[dict[str, Any]] = stack.decide("127.0.0.10", LCR_NUMBER).get("legs", [])
    return str(legs[0]["carrier_id"]) if legs else ""


@pytest.mark.kamailio_defines(*PROBED)
@pytest.mark.kamailio_log_allows("carrier gateway", "gateway state not stored")
def test_a_dead_gateway_is_skipped_without_a_timeout_and_comes_back(
    gateways: dict[str, Gateway], stack: Stack
) -> None:
    """bravo stops answering OPTIONS and INVITEs: once Kamailio's prober tells sipdata,
    calls go to charlie at once (bravo never sees them); when bravo answers its probes
    again it is offered again, and the call it takes closes its breaker."""
    bravo = gateways[BRAVO]
    wait_for(lambda: "OPTIONS" in bravo.methods(), "keepalive to probe bravo")
    assert state(stack, BRAVO) == "closed"
    bravo.silent = True  # no answer to OPTIONS, none to INVITE
    wait_for(lambda: state(stack, BRAVO) == "open", "bravo judged down", timeout_s=15)
    assert first_carrier(stack) == demo_id("org:charlie")
    seen = len(bravo.received)
    call = caller(stack, LCR_NUMBER)
    result = call.run()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert "INVITE" in gateways[CHARLIE].methods()
    assert bravo.received[seen:] == []  # bravo never got the INVITE
    # no failure timer was waited for: the answer came at once
    assert (result.percentile(100) or 0) < 1000, result.rtt_ms
    bravo.silent = False
    wait_for(lambda: state(stack, BRAVO) == "half_open", "bravo answering again", timeout_s=15)
    assert first_carrier(stack) == demo_id("org:bravo")
    again = caller(stack, LCR_NUMBER).run()
    assert again.returncode == 0 and again.successful == 1, again.errors
    assert "INVITE" in bravo.methods()
    wait_for(lambda: state(stack, BRAVO) == "closed", "the answered call closing the breaker")


def test_a_failed_branch_reaches_the_gateway_breaker_and_quality(stack: Stack) -> None:
    """bravo answers 503 and the call fails over to charlie: sipdata counts one failure
    against bravo's gateway (from Kamailio's attempt report), and each carrier's
    quality gets its branch."""
    bravo = carrier(stack, BRAVO, refuse=(503, "Service Unavailable"))
    charlie = carrier(stack, CHARLIE)
    with running(bravo, charlie):
        result = caller(stack, LCR_NUMBER).run()
        bravo.wait()
        charlie.wait()
    assert result.returncode == 0 and result.successful == 1, result.errors

    def failures() -> int | None:
        listed = stack.sipdata.get("/v1/gateways")["gateways"]
        return next(g["failures"] for g in listed if g["gateway"] == f"{BRAVO}:5060") or None

    assert wait_for(failures, "bravo's failure counted") == 1

    def quality() -> dict[str, Any] | None:
        offers = stack.sipdata.get(f"/v1/lcr?number={LCR_NUMBER}")["offers"]
        got = {o["carrier_id"]: o["quality"]["carrier"] for o in offers}
        charlie_q = got.get(demo_id("org:charlie"))
        return got if charlie_q and charlie_q["answered"] >= 1 else None

    # the drainer counts both branches for their carriers' quality: bravo's
    # attempt failed, charlie's was answered after it rang (its PDD is known)
    got = wait_for(quality, "the call's outcomes in the carriers' quality")
    bravo_q, charlie_q = got[demo_id("org:bravo")], got[demo_id("org:charlie")]
    assert bravo_q["attempts"] >= 1 and bravo_q["failure_ratio"] > 0
    assert charlie_q["asr"] > 0 and charlie_q["pdd_ms"] is not None


def set_balance(stack: Stack, amount: str) -> None:
    stack.sql(
        "UPDATE billing_accounts SET current_balance = $2::numeric WHERE org_id = $1::uuid",
        demo_id("org:delta"),
        Decimal(amount),
    )
    # the credit loader reads balances every SIPDATA_CREDIT_REFRESH_S (5 s)
    wait_for(
        lambda: (
            stack.decide(DELTA_IP, LCR_NUMBER)["explain"].get("credit", {}).get("available")
            == f"{Decimal(amount):.6f}"
        ),
        "the new balance loaded",
        timeout_s=15,
    )


def test_an_org_without_funds_gets_402(stack: Stack) -> None:
    set_balance(stack, "0")
    result = refused_caller(stack, LCR_NUMBER, 402, ip=DELTA_IP).run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_a_call_that_outlasts_its_credit_is_ended_at_the_computed_time(stack: Stack) -> None:
    """0.0010 pays one 6 s block at the dearest offered rate (0.0100/min): sipdata gives
    max_s 6, Kamailio ends the answered call after 6 s with a BYE both ways, and the CDR
    bills what was used; the balance pays it."""
    set_balance(stack, "0.0010")
    assert stack.decide(DELTA_IP, LCR_NUMBER)["explain"]["credit"]["max_s"] == 6
    bravo = carrier(stack, BRAVO)
    call = Sipp(
        "uac_call_ended",
        stack.workdir,
        ip=DELTA_IP,
        port=0,
        target=stack.target,
        service=LCR_NUMBER,
        timeout_s=30,
    )
    with running(bravo):
        result = call.run(timeout_s=40)
        bravo.wait()
    assert result.returncode == 0 and result.successful == 1, result.errors
    (cdr,) = wait_for(lambda: stack.cdrs(call.call_id_marker), "the CDR of the ended call")
    assert cdr["termination_cause"] == "timeout"
    assert 6 <= cdr["duration"] <= 8, cdr["duration"]
    assert cdr["billable_duration"] in (6, 12)
    (row,) = stack.sql(
        "SELECT current_balance FROM billing_accounts WHERE org_id = $1::uuid",
        demo_id("org:delta"),
    )
    assert row["current_balance"] == Decimal("0.0010") - cdr["cost"]
    assert row["current_balance"] >= Decimal("-0.0005")  # at most one increment over
