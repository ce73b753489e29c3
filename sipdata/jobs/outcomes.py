"""What the drainer learns from call reports besides CDRs: carrier quality tallies, and the
settlement of credit holds once their CDRs are in the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import orjson
import structlog

from sipdata.cache.health import RoutingHealth
from sipdata.cache.live import Entry
from sipdata.decide import credit, quality, rating
from sipdata.decide.rating import Cdr
from sipdata.errors import CacheUnavailable
from sipdata.metrics import Metrics

log = structlog.get_logger(__name__)
MEASURES = ("attempts", "asr", "acd_s", "pdd_ms", "failure_ratio")


def _tallies(entries: Sequence[Entry]) -> list[tuple[str, str, int, quality.Tally]]:
    out: list[tuple[str, str, int, quality.Tally]] = []
    for _, fields in entries:
        try:
            event = orjson.loads(fields[b"event"])
            lease = orjson.loads(fields[b"lease"]) if fields.get(b"lease") else None
            seconds = 0
            if event.get("event") == "end" and event.get("answer_ts"):
                seconds = rating.talk_seconds(
                    dt.datetime.fromisoformat(event["answer_ts"]),
                    dt.datetime.fromisoformat(event["ts"]),
                )
            out.extend(quality.tallies_of(event, lease, seconds))
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            continue  # the CDR path dead-letters what it cannot read; a tally is not worth it
    return out


class Outcomes:
    def __init__(self, health: RoutingHealth, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics

    async def observe(self, entries: Sequence[Entry], written: Sequence[Cdr]) -> None:
        """After a batch's CDRs are durable: settle their holds, count their outcomes.
        Neither is worth failing the batch for: a hold not settled lapses, and a tally
        lost is one call less in a 15-minute window."""
        try:
            await self._settle(written)
            tallies = quality.combine(_tallies(entries))
            if tallies:
                touched = await self.health.add_tallies(tallies)
                self._export(await self.health.summarise(touched))
        except CacheUnavailable as exc:
            log.warning("call outcomes not recorded", error=exc.message)

    async def _settle(self, written: Sequence[Cdr]) -> None:
        by_org: dict[str, list[tuple[str, int]]] = {}
        for cdr in written:
            if cdr.credit:
                cost = credit.to_micro(cdr.cost, up=True) if cdr.cost else 0
                by_org.setdefault(cdr.org_id, []).append((cdr.call_id, cost))
        for org_id, costs in by_org.items():
            await self.health.settle(org_id, costs)

    def _export(self, summaries: dict[str, quality.Summary]) -> None:
        for scope, summary in summaries.items():
            carrier, _, prefix = scope.partition("|")
            doc = summary.to_json()
            for measure in MEASURES:
                value = doc.get(measure)
                gauge = self.metrics.carrier_quality.labels(carrier, prefix, measure)
                gauge.set(float(value) if value is not None else float("nan"))
