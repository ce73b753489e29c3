"""Two sipdata nodes behind one Kamailio: a node that dies or hangs costs no calls, and a
hung node is left out after one deadline, not once per call."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import ACME_IP, BRAVO, Stack, wait_for
from tests.e2e.harness import Kamailio, Sipdata, Sipp, running

LCR_NUMBER = "12125551234"
RETRIED = "failed, asking the next one"


@dataclass
class Pair:
    """Nodes a and b (node indexes 0 and 1 in the edge's list) and the edge."""

    stack: Stack
    a: Sipdata
    b: Sipdata

    @property
    def edge(self) -> Kamailio:
        return self.stack.kamailio

    def down(self) -> str:
        """The edge's htable of nodes marked down (kamcmd htable.dump nodedown)."""
        return self.edge.rpc("htable.dump", "nodedown")

    def decisions(self, node: Sipdata) -> int:
        """Decisions a node has answered, from its /metrics."""
        with urllib.request.urlopen(node.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        pattern = r'sipdata_http_requests_total\{endpoint="/v1/decide/invite",status="200"\} (\S+)'
        return sum(int(float(v)) for v in re.findall(pattern, text))


@pytest.fixture
def pair(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[Pair]:
    a = Sipdata(e2e_env, tmp_path / "sipdata-a.log")
    b = Sipdata(e2e_env, tmp_path / "sipdata-b.log")
    a.start()
    b.start()
    edge = Kamailio(
        a.url,
        tmp_path,
        [
            f'SIPDATA_NODES="{a.url},{b.url}"',
            # a report lost with a node goes out again within a second
            'REPORT_RETRY_TIMER="name=reports;interval=1;mode=1;"',
        ],
    )
    try:
        edge.start()
        yield Pair(Stack(e2e_env, tmp_path, a, edge), a, b)
    finally:
        edge.stop()
        a.stop()
        b.stop()
    faults = edge.script_faults()
    assert not faults, "kamailio.cfg misbehaved:\n" + "\n".join(faults[:20])


def calls(pair: Pair, n: int, rate: float) -> tuple[Sipp, Sipp]:
    """A carrier answering `n` calls and a caller placing them at `rate` per second."""
    carrier = Sipp("uas_answer", pair.stack.workdir, ip=BRAVO, calls=n, timeout_s=60)
    caller = Sipp(
        "uac_call",
        pair.stack.workdir,
        ip=ACME_IP,
        port=0,
        target=pair.stack.target,
        service=LCR_NUMBER,
        calls=n,
        rate=rate,
        args=["-d", "200"],
    )
    return carrier, caller


def test_both_nodes_answer_decisions(pair: Pair) -> None:
    """Questions spread over the nodes: each answers some of twenty calls."""
    carrier, caller = calls(pair, 20, 20)
    with running(carrier):
        result = caller.run()
    assert result.successful == 20 and result.failed == 0, result.errors
    assert pair.decisions(pair.a) > 0 and pair.decisions(pair.b) > 0


def test_a_node_killed_mid_run_costs_no_call_and_no_cdr(pair: Pair) -> None:
    """kill -9 of one node while calls flow: a decision it had in flight is asked again of
    the other node, its lost report batches are sent again, and every call leaves exactly
    one CDR (the report keys make the second delivery harmless)."""
    n = 150
    carrier, caller = calls(pair, n, 25)
    with running(carrier):
        caller.start()
        time.sleep(2.0)
        assert pair.b.proc is not None
        os.killpg(pair.b.proc.pid, signal.SIGKILL)
        result = caller.wait(90)
    assert result.successful == n and result.failed == 0, result.errors
    assert "is down" in pair.edge.log()

    def all_cdrs() -> list[dict[str, object]] | None:
        rows = pair.stack.cdrs(caller.call_id_marker)
        return rows if len(rows) >= n else None

    rows = wait_for(all_cdrs, f"{n} CDRs", timeout_s=30)
    call_ids = [r["call_id"] for r in rows]
    assert len(call_ids) == len(set(call_ids)) == n


def test_a_hung_node_is_left_out_after_one_deadline(pair: Pair) -> None:
    """A node that accepts connections and never answers (SIGSTOP) delays only the calls
    asked of it before one deadline passed; once marked down no call waits on it, and
    when it answers its probe again it takes decisions again."""
    pair.b.pause()
    try:
        carrier, caller = calls(pair, 10, 10)
        with running(carrier):
            first = caller.run()
        assert first.successful == 10, first.errors
        wait_for(lambda: "value" in pair.down(), "node b marked down", timeout_s=10)
        retried = pair.edge.log().count(RETRIED)
        carrier, caller = calls(pair, 30, 30)
        with running(carrier):
            second = caller.run()
        assert second.successful == 30 and second.failed == 0, second.errors
        # not one of the thirty was asked of the hung node
        assert pair.edge.log().count(RETRIED) == retried
    finally:
        pair.b.resume()
    wait_for(lambda: "value" not in pair.down(), "node b up again", timeout_s=10)
    before = pair.decisions(pair.b)
    carrier, caller = calls(pair, 20, 20)
    with running(carrier):
        third = caller.run()
    assert third.successful == 20, third.errors
    assert pair.decisions(pair.b) > before
