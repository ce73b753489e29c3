"""Calls through the real Kamailio script and sipdata, placed and answered by SIPp."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import orjson
import pytest

from tests.e2e.conftest import (
    ACME_IP,
    ACME_OLD,
    ALPHA,
    BRAVO,
    CHARLIE,
    STRANGER,
    Stack,
    demo_id,
    wait_for,
)
from tests.e2e.harness import Listener, running
from tests.e2e.parties import caller, carrier, digest_caller, refused_caller

LCR_NUMBER = "12125551234"  # bravo 0.005 < charlie 0.009 < alpha 0.010


@pytest.fixture
def quiet_carriers() -> Iterator[dict[str, Listener]]:
    """Sockets on carrier addresses no SIPp answers on, to prove nothing reached them."""
    listeners: dict[str, Listener] = {}
    yield listeners
    for listener in listeners.values():
        listener.close()


def test_ip_trunk_call_reaches_the_cheapest_carrier(
    stack: Stack, quiet_carriers: dict[str, Listener]
) -> None:
    """acme-ip calls 12125551234: bravo (the cheapest) answers; alpha and charlie see nothing."""
    quiet_carriers.update({ip: Listener(ip) for ip in (ALPHA, CHARLIE)})
    bravo = carrier(stack, BRAVO)
    with running(bravo):
        result = caller(stack, LCR_NUMBER).run()
        callee = bravo.wait()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert callee.successful == 1, callee.errors
    assert all(not q.received() for q in quiet_carriers.values())


def test_completed_call_leaves_a_rated_cdr(stack: Stack) -> None:
    """Kamailio's start, answer and end reports become one CDR: trunk, parties, addresses,
    times, the answering carrier's rate, cost and the answer's codecs."""
    with running(carrier(stack, BRAVO)):
        call = caller(stack, LCR_NUMBER, hold_ms=1500)
        result = call.run()
    assert result.successful == 1, result.errors
    (cdr,) = wait_for(lambda: stack.cdrs(call.call_id_marker), "the CDR")
    assert str(cdr["trunk_id"]) == demo_id("trunk:acme-ip")
    assert str(cdr["org_id"]) == demo_id("org:acme")
    assert str(cdr["source_ip"]) == ACME_IP and str(cdr["destination_ip"]) == BRAVO
    assert cdr["to_number"] == LCR_NUMBER
    assert cdr["sip_response_code"] == 200 and cdr["termination_cause"] == "caller_bye"
    assert orjson.loads(cdr["codecs_used"]) == ["PCMA", "telephone-event"]
    assert cdr["start_time"] <= cdr["answer_time"] <= cdr["end_time"]
    assert 1 <= cdr["duration"] <= 5 and cdr["billable_duration"] == 6
    assert cdr["rate"] == Decimal("0.005") and cdr["cost"] == Decimal("0.0005")
    # every report was acknowledged, so Kamailio keeps none for sending again
    wait_for(lambda: "value" not in stack.kamailio.rpc("htable.dump", "reports"), "no reports")
    # and dropped them by the keys filed with their batch (one parse of the answer)
    wait_for(lambda: "value" not in stack.kamailio.rpc("htable.dump", "batches"), "no batches")


def test_full_trunk_refuses_the_next_call(stack: Stack, one_channel: str) -> None:
    """acme-ip limited to one channel: while a call is up, the next one gets 503 and never
    reaches a carrier; after it ends, calls go through again."""
    bravo = carrier(stack, BRAVO)
    with running(bravo):
        held = caller(stack, LCR_NUMBER, hold_ms=4000).start()
        wait_for(lambda: stack.channels(one_channel) == 1, "the first call's channel")
        refused = refused_caller(stack, LCR_NUMBER, 503).run()
        first = held.wait()
        bravo.wait()
    assert refused.returncode == 0 and refused.successful == 1, refused.errors
    assert first.successful == 1, first.errors
    wait_for(lambda: stack.channels(one_channel) == 0, "the channel to come back")
    with running(carrier(stack, BRAVO)):
        again = caller(stack, LCR_NUMBER).run()
    assert again.successful == 1, again.errors


def test_digest_trunk_is_challenged_then_routed(stack: Stack) -> None:
    """acme-pbx's INVITE gets 407; with the right password it is routed to bravo."""
    with running(carrier(stack, BRAVO)) as (bravo,):
        result = digest_caller(stack, LCR_NUMBER, "acme-secret").run()
        callee = bravo.wait()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert callee.successful == 1, callee.errors


def test_digest_trunk_with_wrong_password_is_challenged_again(stack: Stack) -> None:
    """A wrong password never reaches a carrier: the second INVITE is challenged again."""
    result = digest_caller(stack, LCR_NUMBER, "wrong", scenario="uac_auth_refused").run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_unknown_source_without_credentials_is_challenged(stack: Stack) -> None:
    """An address no trunk owns gets sipdata's decided 407: digest trunks answer it."""
    result = refused_caller(stack, LCR_NUMBER, 407, ip=STRANGER).run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_suspended_trunk_is_rejected_with_the_decided_code(stack: Stack) -> None:
    """acme-old is suspended: 403 with sipdata's reason, and no carrier is tried."""
    decided = stack.decide(ACME_OLD, LCR_NUMBER)
    assert decided["verdict"] == "reject" and decided["code"] == 403
    result = refused_caller(stack, LCR_NUMBER, 403, ip=ACME_OLD).run()
    assert result.returncode == 0 and result.successful == 1, result.errors


def test_carrier_503_fails_over_to_the_next_carrier(stack: Stack) -> None:
    """bravo answers 503: the call completes on charlie, the next cheapest."""
    bravo = carrier(stack, BRAVO, refuse=(503, "Service Unavailable"))
    charlie = carrier(stack, CHARLIE)
    with running(bravo, charlie):
        result = caller(stack, LCR_NUMBER).run()
        refused, answered = bravo.wait(), charlie.wait()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert refused.successful == 1 and answered.successful == 1


def test_busy_callee_is_not_retried_elsewhere(
    stack: Stack, quiet_carriers: dict[str, Listener]
) -> None:
    """bravo answers 486: the caller gets 486 and no other carrier is tried."""
    quiet_carriers.update({ip: Listener(ip) for ip in (ALPHA, CHARLIE)})
    bravo = carrier(stack, BRAVO, refuse=(486, "Busy Here"))
    with running(bravo):
        call = refused_caller(stack, LCR_NUMBER, 486)
        result = call.run()
        bravo.wait()
    assert result.returncode == 0 and result.successful == 1, result.errors
    assert all(not q.received() for q in quiet_carriers.values())
    (cdr,) = wait_for(lambda: stack.cdrs(call.call_id_marker), "the CDR of the failed call")
    assert (cdr["sip_response_code"], cdr["duration"], cdr["termination_cause"]) == (
        486,
        0,
        "failed",
    )


def test_reject_rule_rejects_with_its_code(stack: Stack) -> None:
    """acme's rule blocks 1900 premium numbers with 403."""
    result = refused_caller(stack, "19005551234", 403).run()
    assert result.returncode == 0 and result.successful == 1, result.errors


@pytest.fixture
def one_channel(stack: Stack) -> Iterator[str]:
    """acme-ip may hold one call at a time, for the length of a test."""
    trunk_id = demo_id("trunk:acme-ip")
    stack.sql("UPDATE sip_trunks SET max_channels = 1 WHERE id = $1", trunk_id)
    stack.warm()
    wait_for(lambda: stack.decide(ACME_IP, LCR_NUMBER)["verdict"] == "route", "the reload")
    yield trunk_id
    stack.sql("UPDATE sip_trunks SET max_channels = 100 WHERE id = $1", trunk_id)
    stack.warm()


@pytest.fixture
def timed_rule(stack: Stack) -> Iterator[str]:
    """An acme rule sending 1212555 to alpha (the dearest carrier), in a window around now."""
    rule_id = demo_id("rule:e2e-window")
    yield rule_id
    stack.sql("DELETE FROM routing_rules WHERE id = $1", rule_id)
    stack.warm()


def _window(now: dt.datetime, inside: bool) -> str:
    """Two hours around now, or two hours starting two hours from now (wrapping midnight)."""
    start = now + (dt.timedelta(hours=-1) if inside else dt.timedelta(hours=2))
    end = start + dt.timedelta(hours=2)
    doc = {"timezone": "UTC", "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}
    return orjson.dumps(doc).decode()


@pytest.mark.parametrize("inside", [True, False], ids=["window-open", "window-closed"])
def test_time_window_rule_overrides_lcr_only_inside_its_window(
    stack: Stack, timed_rule: str, inside: bool
) -> None:
    """Inside its window the rule sends the call to alpha; outside, LCR picks bravo."""
    stack.sql(
        """INSERT INTO routing_rules (id, org_id, name, priority, match_type, match_pattern,
                                      time_condition, action, destination)
           VALUES ($1, $2, 'e2e window', 1, 'prefix', '1212555', $3::jsonb, 'trunk', $4)""",
        timed_rule,
        demo_id("org:acme"),
        _window(dt.datetime.now(dt.UTC), inside),
        demo_id("trunk:alpha-gw"),
    )
    stack.warm()
    expected = ALPHA if inside else BRAVO
    wait_for(
        lambda: expected in stack.decide(ACME_IP, LCR_NUMBER)["routing"]["routes"][0]["uri"],
        "the new generation",
    )
    with running(carrier(stack, expected)) as (callee,):
        result = caller(stack, LCR_NUMBER).run()
        answered = callee.wait()
    assert result.successful == 1, result.errors
    assert answered.successful == 1, answered.errors
