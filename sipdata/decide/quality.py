"""Carrier quality from call reports (ASR, ACD, PDD, failure ratio) and the orders it allows.

Counting: every branch Kamailio tried is one attempt of the carrier it went
to. A failed branch (an `attempt` report) is a carrier failure when its code
is (408, 5xx: breaker.is_failure); an answered call (its `end` report) is an
attempt that was answered, with its talk time and its post-dial delay (the
first 18x or 200 after that branch was sent). The `fail` report of a call adds
nothing: its last branch was reported as an attempt already.

Windows: tallies go into one bucket per minute (`BUCKET_S`) per carrier and per
carrier + matched prefix; a summary adds the buckets of the last
`window_s`. A carrier with fewer than `min_calls` attempts in the window is
"unjudged": no strategy moves it for quality.

Strategies (an org's `organization_settings.features.routing_strategy`):
* `cost` (default): rate, then priority, then carrier id (decide/lcr.py).
* `quality_floor`: as cost, but judged carriers under `asr_floor` or over
  `failure_ceiling` go after every other carrier (still in cost order).
* `quality_weighted`: by rate divided by the carrier's smoothed ASR
  ((answered + prior x min_calls) / (attempts + min_calls)), so a carrier twice
  as likely to connect may cost up to twice as much; unjudged carriers count at
  the prior.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from sipdata.decide.breaker import gateway_key, is_failure
from sipdata.decide.rating import answered_leg

BUCKET_S = 60
COST, QUALITY_FLOOR, QUALITY_WEIGHTED = "cost", "quality_floor", "quality_weighted"
STRATEGIES = (COST, QUALITY_FLOOR, QUALITY_WEIGHTED)
ALL_PREFIXES = "*"  # the carrier's own tally, across prefixes


@dataclass(frozen=True, slots=True)
class QualityConfig:
    window_s: int = 900
    min_calls: int = 20
    asr_floor: float = 0.3
    failure_ceiling: float = 0.5
    prior_asr: float = 0.5


@dataclass(frozen=True, slots=True)
class Tally:
    attempts: int = 0
    answered: int = 0
    failed: int = 0
    talk_s: int = 0
    pdd_ms: int = 0
    pdd_n: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f) + getattr(other, f) for f in TALLY_FIELDS))

    def items(self) -> list[tuple[str, int]]:
        return [(f, getattr(self, f)) for f in TALLY_FIELDS if getattr(self, f)]


TALLY_FIELDS = tuple(f.name for f in fields(Tally))


def tally_from(stored: Mapping[bytes | str, bytes | str | int]) -> Tally:
    """A bucket as Redis returns it (HGETALL); unknown or unreadable fields count 0."""
    got: dict[str, int] = {}
    for k, v in stored.items():
        name = k.decode() if isinstance(k, bytes) else k
        if name in TALLY_FIELDS:
            try:
                got[name] = int(v)
            except ValueError:
                continue
    return Tally(**got)


@dataclass(frozen=True, slots=True)
class Summary:
    attempts: int
    answered: int
    asr: float | None  # answered / attempts
    acd_s: float | None  # talk seconds per answered call
    pdd_ms: float | None  # mean post-dial delay
    failure_ratio: float | None  # carrier failures / attempts

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "answered": self.answered,
            "asr": self.asr,
            "acd_s": self.acd_s,
            "pdd_ms": self.pdd_ms,
            "failure_ratio": self.failure_ratio,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Summary:
        return cls(
            attempts=int(doc.get("attempts") or 0),
            answered=int(doc.get("answered") or 0),
            asr=_maybe(doc.get("asr")),
            acd_s=_maybe(doc.get("acd_s")),
            pdd_ms=_maybe(doc.get("pdd_ms")),
            failure_ratio=_maybe(doc.get("failure_ratio")),
        )


def _maybe(value: Any) -> float | None:
    return None if value is None else float(value)


def summarise(buckets: Iterable[Tally]) -> Summary:
    total = Tally()
    for bucket in buckets:
        total = total + bucket
    n = total.attempts

    def ratio(a: int, b: int, digits: int = 4) -> float | None:
        return round(a / b, digits) if b else None

    return Summary(
        attempts=n,
        answered=total.answered,
        asr=ratio(total.answered, n),
        acd_s=ratio(total.talk_s, total.answered, 1),
        pdd_ms=ratio(total.pdd_ms, total.pdd_n, 1),
        failure_ratio=ratio(total.failed, n),
    )


def bucket_of(ts_s: float) -> int:
    return int(ts_s // BUCKET_S)


def window(now_s: float, config: QualityConfig) -> range:
    """The buckets a summary adds: the last window_s, this minute included."""
    last = bucket_of(now_s)
    return range(last - max(1, config.window_s // BUCKET_S) + 1, last + 1)


def _leg_of(legs: Sequence[Mapping[str, Any]], gateway: str) -> Mapping[str, Any] | None:
    key = gateway_key(gateway)
    for leg in legs:
        for uri in (leg.get("dst_uri"), leg.get("uri")):
            if uri and gateway_key(str(uri)) == key:
                return leg
    return None


def _ms_between(start: Any, end: Any) -> int | None:
    if not start or not end:
        return None
    delta = dt.datetime.fromisoformat(str(end)) - dt.datetime.fromisoformat(str(start))
    ms = int(delta.total_seconds() * 1000)
    return ms if ms >= 0 else None


def tallies_of(
    event: Mapping[str, Any], lease: Mapping[str, Any] | None, duration_s: int
) -> list[tuple[str, str, int, Tally]]:
    """What one stored report adds: (carrier, prefix, bucket, tally) for the carrier
    total and its prefix. Only destinations from rate decks have a carrier."""
    kind = event.get("event")
    legs = (lease or {}).get("legs") or []
    gateway = event.get("gateway")
    if kind == "attempt" and gateway:
        leg = _leg_of(legs, str(gateway))
        code = int(event.get("sip_code") or 408)
        tally = Tally(attempts=1, failed=int(is_failure(code)))
    elif kind == "end" and event.get("answer_ts"):
        leg = _leg_of(legs, str(gateway)) if gateway else None
        leg = leg or answered_leg(legs, event.get("destination_ip"))
        pdd = _ms_between(event.get("branch_ts") or event.get("invite_ts"), event.get("ring_ts"))
        tally = Tally(
            attempts=1,
            answered=1,
            talk_s=duration_s,
            pdd_ms=pdd or 0,
            pdd_n=int(pdd is not None),
        )
    else:
        return []
    if leg is None or not leg.get("carrier_id"):
        return []
    ts = dt.datetime.fromisoformat(str(event["ts"])).timestamp()
    carrier, bucket = str(leg["carrier_id"]), bucket_of(ts)
    out = [(carrier, ALL_PREFIXES, bucket, tally)]
    if leg.get("prefix"):
        out.append((carrier, str(leg["prefix"]), bucket, tally))
    return out


def combine(
    items: Iterable[tuple[str, str, int, Tally]],
) -> list[tuple[str, str, int, Tally]]:
    """One tally per (carrier, prefix, bucket): a batch of reports for a few carriers
    becomes a few increments per bucket instead of one per report."""
    out: dict[tuple[str, str, int], Tally] = {}
    for carrier, prefix, bucket, tally in items:
        key = (carrier, prefix, bucket)
        got = out.get(key)
        out[key] = tally if got is None else got + tally
    return [(*key, tally) for key, tally in out.items()]


@dataclass(frozen=True, slots=True)
class Ranked:
    carrier_id: str
    rate: Decimal
    priority: int
    why: str  # for explain: the order's reason for this carrier


def judged(s: Summary | None, config: QualityConfig) -> bool:
    return s is not None and s.attempts >= config.min_calls


def smoothed_asr(s: Summary | None, config: QualityConfig) -> float:
    k = config.min_calls
    if s is None:
        return config.prior_asr
    return (s.answered + config.prior_asr * k) / (s.attempts + k) if s.attempts + k else 0.0


def order(
    offers: Sequence[tuple[str, Decimal, int]],
    summaries: Mapping[str, Summary],
    strategy: str,
    config: QualityConfig,
) -> list[Ranked]:
    """Carriers (id, rate, priority) in the order `strategy` calls for, each with why."""
    if strategy == QUALITY_FLOOR:

        def below(cid: str) -> bool:
            s = summaries.get(cid)
            if not judged(s, config) or s is None:
                return False
            asr = s.asr if s.asr is not None else 0.0
            fails = s.failure_ratio if s.failure_ratio is not None else 0.0
            return asr < config.asr_floor or fails > config.failure_ceiling

        ranked = sorted(offers, key=lambda o: (below(o[0]), o[1], o[2], o[0]))
        return [
            Ranked(c, r, p, "under the quality floor: demoted" if below(c) else "cost")
            for c, r, p in ranked
        ]
    if strategy == QUALITY_WEIGHTED:

        def weight(o: tuple[str, Decimal, int]) -> float:
            return float(o[1]) / max(smoothed_asr(summaries.get(o[0]), config), 1e-6)

        ranked = sorted(offers, key=lambda o: (weight(o), o[2], o[0]))
        return [
            Ranked(
                c,
                r,
                p,
                f"rate / smoothed ASR = {weight((c, r, p)):.6f}",
            )
            for c, r, p in ranked
        ]
    ranked = sorted(offers, key=lambda o: (o[1], o[2], o[0]))
    return [Ranked(c, r, p, "cost") for c, r, p in ranked]
