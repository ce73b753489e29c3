"""Gateway breakers, carrier quality tallies and credit holds in Redis. Errors become
CacheUnavailable."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.cache.scripts import (
    CreditArgv,
    CreditKeys,
    CreditLoadArgv,
    CreditLoadKeys,
    CreditSettleArgvEach,
    Empty,
    GatewayEventArgv,
    GatewayEventArgvEach,
    GatewayEventKeys,
    flat,
)
from sipdata.decide import breaker, credit, quality
from sipdata.decide.breaker import Breaker, BreakerConfig
from sipdata.decide.quality import QualityConfig, Summary, Tally


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _credit_keys(org_id: str) -> CreditKeys:
    return CreditKeys(
        keys.credit_account(org_id), keys.credit_holds(org_id), keys.credit_held(org_id)
    )


class RoutingHealth:
    """What decisions learn from how calls went: breakers, quality and credit."""

    def __init__(self, cache: Cache, breakers: BreakerConfig, quality_config: QualityConfig):
        self.cache = cache
        self.breaker_config = breakers
        self.quality_config = quality_config

    # -- breakers ---------------------------------------------------------------

    async def gateway_events(
        self, events: Sequence[tuple[str, str]], now_ms: int | None = None
    ) -> list[str]:
        """Step each gateway's breaker (gateway_event.lua); the state after each event."""
        if not events:
            return []
        cfg = self.breaker_config
        argv = flat(
            GatewayEventArgv(now_ms or int(time.time() * 1000), cfg.fail_threshold, cfg.open_ms),
            [GatewayEventArgvEach(breaker.gateway_key(g), e) for g, e in events],
        )
        # pinned, as the batch's own call_events: every report batch with an answer
        # or a failed branch steps breakers, and the client's pool adds a lock, a
        # health check and a retry wrapper to each call (pinned.py)
        async with self.cache.translated("gateway events"):
            out = await self.cache.pinned.script(
                self.cache.scripts["gateway_event"], GatewayEventKeys(keys.GATEWAY_BREAKERS), argv
            )
        return [_text(s) for s in out]

    async def breakers(self) -> dict[str, Breaker]:
        async with self.cache.translated("gateway breakers"):
            raw = await self.cache.client.hgetall(keys.GATEWAY_BREAKERS)  # type: ignore[misc]
        return {_text(k): breaker.unpack(v) for k, v in raw.items()}

    # -- quality ------------------------------------------------------------------

    async def add_tallies(self, items: Iterable[tuple[str, str, int, Tally]]) -> set[str]:
        """Add outcomes to their minute buckets; the carriers touched."""
        touched: set[str] = set()
        async with self.cache.translated("quality tallies", bulk=True):
            pipe = self.cache.client.pipeline(transaction=False)
            n = 0
            for carrier, prefix, bucket, tally in items:
                key = keys.quality_bucket(carrier, prefix, bucket)
                for name, value in tally.items():
                    pipe.hincrby(key, name, value)
                pipe.expire(key, keys.QUALITY_BUCKET_TTL_S)
                touched.add(f"{carrier}|{prefix}")
                n += 1
            if n:
                await pipe.execute()
        return touched

    async def summarise(
        self, scopes: Iterable[str], now_s: float | None = None
    ) -> dict[str, Summary]:
        """Recompute and store the window's summary of each "carrier|prefix" scope."""
        now_s = now_s or time.time()
        scopes = sorted(set(scopes))
        out: dict[str, Summary] = {}
        if not scopes:
            return out
        buckets = list(quality.window(now_s, self.quality_config))
        async with self.cache.translated("quality summaries", bulk=True):
            pipe = self.cache.client.pipeline(transaction=False)
            for scope in scopes:
                carrier, _, prefix = scope.partition("|")
                for b in buckets:
                    pipe.hgetall(keys.quality_bucket(carrier, prefix, b))
            raw = await pipe.execute()
            per_carrier: dict[str, bytes] = {}
            per_prefix: dict[str, bytes] = {}
            for i, scope in enumerate(scopes):
                got = raw[i * len(buckets) : (i + 1) * len(buckets)]
                summary = out[scope] = quality.summarise(quality.tally_from(h) for h in got)
                doc = orjson.dumps({**summary.to_json(), "at": int(now_s)})
                carrier, _, prefix = scope.partition("|")
                if prefix == quality.ALL_PREFIXES:
                    per_carrier[carrier] = doc
                else:
                    per_prefix[scope] = doc
            pipe = self.cache.client.pipeline(transaction=False)
            if per_carrier:
                pipe.hset(keys.QUALITY_CARRIERS, mapping=per_carrier)
            if per_prefix:
                pipe.hset(keys.QUALITY_PREFIXES, mapping=per_prefix)
            await pipe.execute()
        return out

    async def summaries(
        self, carriers: Sequence[str], prefixes: Sequence[tuple[str, str]] = ()
    ) -> tuple[dict[str, Summary], dict[tuple[str, str], Summary]]:
        """The stored summaries of these carriers and (carrier, prefix) pairs."""
        async with self.cache.translated("quality summaries"):
            pipe = self.cache.client.pipeline(transaction=False)
            pipe.hmget(keys.QUALITY_CARRIERS, list(carriers) or ["-"])
            pipe.hmget(keys.QUALITY_PREFIXES, [f"{c}|{p}" for c, p in prefixes] or ["-"])
            by_carrier, by_prefix = await pipe.execute()
        return (
            decode_summaries(dict(zip(carriers, by_carrier, strict=False)), self.quality_config),
            decode_summaries(dict(zip(prefixes, by_prefix, strict=False)), self.quality_config),
        )

    # -- credit -------------------------------------------------------------------

    async def reserve(
        self, org_id: str, call_id: str, ask: credit.Ask, lapse_ms: int
    ) -> tuple[str, int, int, int]:
        """credit.lua: (ok | dup | funds | unknown, max_s, hold, free before)."""
        argv = CreditArgv(
            call_id,
            int(time.time() * 1000),
            ask.rate_micro,
            ask.minimum_s,
            ask.increment_s,
            ask.cap_s,
            lapse_ms,
        )
        async with self.cache.translated("credit"):
            out = await self.cache.scripts["credit"](keys=_credit_keys(org_id), args=argv)
        return _text(out[0]), int(out[1]), int(out[2]), int(out[3])

    async def settle(self, org_id: str, costs: Sequence[tuple[str, int]]) -> int:
        """Give back each call's hold and take its cost, once (credit_settle.lua)."""
        async with self.cache.translated("credit settle"):
            return int(
                await self.cache.scripts["credit_settle"](
                    keys=_credit_keys(org_id),
                    args=flat(Empty(), [CreditSettleArgvEach(c, m) for c, m in costs]),
                )
            )

    async def settle_counts(self, org_ids: Sequence[str]) -> list[int]:
        """Each account's settlement count, read before the database (credit_load.lua)."""
        if not org_ids:
            return []
        async with self.cache.translated("credit settles", bulk=True):
            pipe = self.cache.client.pipeline(transaction=False)
            for org_id in org_ids:
                pipe.hget(keys.credit_account(org_id), "settles")
            got = await pipe.execute()
        return [int(v or 0) for v in got]

    async def load_credit(self, accounts: Mapping[str, tuple[int, int]]) -> int:
        """(avail micro-units, settles read before the database) per org; how many loaded."""
        loaded = 0
        async with self.cache.translated("credit load", bulk=True):
            for org_id, (avail, settles) in accounts.items():
                loaded += int(
                    await self.cache.scripts["credit_load"](
                        keys=CreditLoadKeys(keys.credit_account(org_id)),
                        args=CreditLoadArgv(avail, settles),
                    )
                )
        return loaded

    async def account(self, org_id: str) -> dict[str, int]:
        async with self.cache.translated("credit account"):
            raw = await self.cache.client.hgetall(keys.credit_account(org_id))  # type: ignore[misc]
        return {_text(k): int(v) for k, v in raw.items() if _text(k) in ("avail", "reserved")}


def decode_summaries(raw: Mapping[Any, bytes | None], config: QualityConfig) -> dict[Any, Summary]:
    """Stored summaries by key; absent or older than the window ones are left out."""
    out: dict[Any, Summary] = {}
    now = time.time()
    for key, value in raw.items():
        if not value:
            continue
        try:
            doc = orjson.loads(value)
            if now - float(doc.get("at", 0)) > config.window_s:
                continue
            out[key] = Summary.from_json(doc)
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            continue
    return out
