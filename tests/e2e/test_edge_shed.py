"""The edge sheds part of the calls itself while sipdata sheds (kamailio/
sipdata-invite.cfg, route[EDGE_SHED]), and only then.

sipdata is put in the state without a load generator: one decision in flight at
most (SIPDATA_MAX_INFLIGHT_DECISIONS=1) while Redis takes no writes (CLIENT PAUSE
WRITE), so every decision waits out its Redis timeout and those that come meanwhile
are shed. No test here measures speed.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

from tests.e2e.conftest import ACME_IP, REDIS_DB
from tests.e2e.harness import Kamailio, Sipdata, Sipp

PREMIUM = "19005551234"  # acme's rule refuses it with 403: sipdata's answer, no carrier
CALLS = 40


def decisions_asked(sipdata: Sipdata) -> int:
    """Decision requests sipdata has answered so far (sheds included), from /metrics."""
    with urllib.request.urlopen(sipdata.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("sipdata_http_requests_total{")
            and 'endpoint="/v1/decide/invite"' in line
        )
    )


def edge_shed(edge: Kamailio) -> int:
    found = re.search(r"edge_shed = (\d+)", edge.rpc("stats.get_statistics", "edge_shed"))
    assert found, "no edge_shed statistic"
    return int(found.group(1))


@contextlib.contextmanager
def one_slot(
    env: dict[str, str], workdir: Path, defines: Sequence[str] = ()
) -> Iterator[tuple[Sipdata, Kamailio]]:
    """A sipdata that admits one decision at a time, and an edge in front of it."""
    sipdata = Sipdata({**env, "SIPDATA_MAX_INFLIGHT_DECISIONS": "1"}, workdir / "sipdata.log")
    edge = Kamailio(sipdata.url, workdir, defines)
    sipdata.start()
    try:
        edge.start()
        yield sipdata, edge
    finally:
        edge.stop()
        sipdata.stop()


@contextlib.contextmanager
def redis_takes_no_writes() -> Iterator[None]:
    client = redis.Redis(db=REDIS_DB)
    client.client_pause(20000, all=False)  # writes only: EVALSHA of decide.lua waits
    try:
        yield
    finally:
        client.client_unpause()


def callers(edge: Kamailio, workdir: Path, calls: int, rate: float) -> Sipp:
    """`calls` INVITEs from acme-ip to a number its rule refuses: each must end with
    sipdata's 403 or a 503 (sipdata's shed, or the edge's), nothing else."""
    return Sipp(
        "uac_refused_or_shed",
        workdir,
        ip=ACME_IP,
        port=0,
        target=edge.target,
        service=PREMIUM,
        calls=calls,
        rate=rate,
        timeout_s=30,
        replace={"EXPECTED_CODE": "403"},
    )


def test_an_edge_whose_sipdata_sheds_refuses_calls_itself(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """sipdata sheds (503 with Retry-After): past EDGE_SHED_MIN questions in the window
    the edge answers most new INVITEs 503 with Retry-After itself, without asking
    sipdata. Each INVITE is asked once or refused once; none gets 401/403/407 for it."""
    with one_slot(e2e_env, tmp_path, ["EDGE_SHED_MIN=5"]) as (sipdata, edge):
        asked = decisions_asked(sipdata)
        caller = callers(edge, tmp_path, CALLS, rate=40)
        with redis_takes_no_writes():
            result = caller.run()
        assert result.returncode == 0 and result.successful == CALLS, result.errors
        shed = edge_shed(edge)
        assert shed > 0, "the edge refused nothing while sipdata shed"
        assert decisions_asked(sipdata) - asked == CALLS - shed
        refused = re.findall(
            r"^SIP/2\.0 503 .*?\r?\n\r?\n", caller.messages(), re.MULTILINE | re.DOTALL
        )
        assert len(refused) >= shed
        assert all(re.search(r"^Retry-After: \d+", m, re.MULTILINE) for m in refused)


def test_the_shedding_window_lapses_and_the_next_call_is_asked(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """Once EDGE_SHED_WINDOW_S has passed without a shed, the first INVITE is asked of
    sipdata again and gets its verdict: no state is left that keeps refusing."""
    with one_slot(e2e_env, tmp_path, ["EDGE_SHED_MIN=5"]) as (sipdata, edge):
        with redis_takes_no_writes():
            result = callers(edge, tmp_path, CALLS, rate=40).run()
        assert result.returncode == 0 and result.successful == CALLS, result.errors
        shed = edge_shed(edge)
        assert shed > 0
        time.sleep(3.5)  # the window (2 s) and the second its last shed was counted in
        asked = decisions_asked(sipdata)
        after = Sipp(
            "uac_rejected",
            tmp_path,
            ip=ACME_IP,
            port=0,
            target=edge.target,
            service=PREMIUM,
            replace={"EXPECTED_CODE": "403"},
        ).run()
        assert after.returncode == 0 and after.successful == 1, after.errors
        assert decisions_asked(sipdata) - asked == 1 and edge_shed(edge) == shed


def test_below_the_minimum_volume_nothing_is_refused_at_the_edge(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """Fewer questions than EDGE_SHED_MIN in the window: however many sipdata sheds,
    every INVITE is asked of sipdata."""
    with one_slot(e2e_env, tmp_path, ["EDGE_SHED_MIN=1000"]) as (sipdata, edge):
        asked = decisions_asked(sipdata)
        with redis_takes_no_writes():
            result = callers(edge, tmp_path, 20, rate=40).run()
        assert result.returncode == 0 and result.successful == 20, result.errors
        assert edge_shed(edge) == 0
        assert decisions_asked(sipdata) - asked == 20
