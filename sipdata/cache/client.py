"""The Redis client as sipdata uses it: every call bounded in time, errors become CacheUnavailable.

(`type: ignore[misc]` below: redis-py types its asyncio commands as
`Awaitable[T] | T`, shared with the sync client; on this client they are awaitable.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError, ResponseError

from sipdata.cache import keys
from sipdata.cache.pinned import PinnedConnections, ShortOfReplicas
from sipdata.cache.scripts import (
    HsetPackedArgv,
    HsetPackedKeys,
    NextGenerationArgv,
    NextGenerationKeys,
    PruneOnlineArgv,
    PruneOnlineKeys,
    Scripts,
    SwitchArgv,
    SwitchEach,
    SwitchKeys,
    flat,
)
from sipdata.errors import CacheUnavailable, ConsumerGroupLost, NotReplicated
from sipdata.settings import Settings

# Fields per HSET: enough to amortise the round trip, few enough that a decision
# queued behind one waits a fraction of a millisecond (make bench, import section).
HSET_BATCH = 500
PACKED_BATCH = 500  # fields per hset_packed.lua call: well under 1 ms of Redis each


# One Redis timeout per decision: once a call of the request has waited out its
# timeout, its further calls fail at once (each caller falls back to the
# database), so a slow Redis costs a decision one timeout, not one per step:
# at 500 ms of latency, three timed-out steps passed the decision's deadline
# (tests/netfaults). A failure that costs no time (a refused or reset
# connection) does not count: the next call gets a fresh connection. Set only
# inside `one_timeout()`; background jobs are never cut short by it.
_TIMED_OUT: ContextVar[list[bool] | None] = ContextVar("redis_timed_out", default=None)


@contextmanager
def one_timeout() -> Iterator[None]:
    """The scope (one request) within which Redis may time out once."""
    token = _TIMED_OUT.set([False])
    try:
        yield
    finally:
        _TIMED_OUT.reset(token)


def connect(settings: Settings) -> aioredis.Redis:
    # No socket_timeout: redis-py's own read timeout swallows task cancellation
    # now and then (tests/integration/test_cancellation.py), which would let a
    # request outlive its deadline. Cache bounds every call with asyncio.timeout.
    # No CLIENT SETINFO on connect: redis-py reads its own version through
    # importlib.metadata for it, every connection (5 % of serve under a burst).
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_ms / 1000,
        "max_connections": 256,
        "decode_responses": False,
        "driver_info": None,
    }
    sentinels = settings.sentinel_addresses()
    if not sentinels:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    # Every new connection asks a sentinel for the primary first; a connection
    # to a primary since demoted gets READONLY, which redis-py turns into a
    # connection error, so the next connection asks again (docs/operations.md).
    # The sentinels' own sockets are bounded: a hung sentinel must not hang a
    # decision past its deadline.
    url = urlsplit(settings.redis_url)
    bound = settings.redis_timeout_ms / 1000
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        sentinel_kwargs={"socket_connect_timeout": bound, "socket_timeout": bound},
    )
    client: aioredis.Redis = sentinel.master_for(
        settings.redis_sentinel_service,
        db=int(url.path.lstrip("/") or 0),
        username=url.username,
        password=url.password,
        **options,
    )
    return client


@dataclass(frozen=True, slots=True)
class IdentityProbe:
    """Who a caller may be, as one pipeline read it from a generation (raw stored
    values; None = absent): the serving generation's id, the ACL probes' owners,
    and the digest user's credential and read-through entry."""

    current: int | None
    acl: list[bytes | None]
    cred: bytes | None
    cred_rt: bytes | None


class Cache:
    """Redis: generation reads and writes, read-through entries, the warmer's lock and
    heartbeat. Live state (leases, registrations, report streams) is `live.py`."""

    def __init__(
        self,
        client: aioredis.Redis,
        timeout_s: float = 0.25,
        bulk_timeout_s: float = 30.0,
        replicas_ack: int = 0,
        replicas_wait_ms: int = 100,
    ) -> None:
        self.client = client
        # Acknowledged writes wait for this many replicas (Settings.redis_replicas_ack).
        self.replicas_ack = replicas_ack
        self.replicas_wait_ms = replicas_wait_ms
        self.timeout_s = timeout_s  # per call on the request path
        self.bulk_timeout_s = bulk_timeout_s  # per batch of a warmer load
        # As many idle connections as decisions may be in flight: under a burst a
        # connection closed for want of room is opened again a moment later.
        self.pinned = PinnedConnections(client, idle_max=1024)
        self.scripts = Scripts(client)
        # The epoch (keys.EPOCH) this process last saw, set by serving.catalog: the
        # read-through keys it reads and writes are those of that epoch.
        self.epoch = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Cache:
        return cls(
            connect(settings),
            timeout_s=settings.redis_timeout_ms / 1000,
            replicas_ack=settings.redis_replicas_ack,
            replicas_wait_ms=settings.redis_replicas_wait_ms,
        )

    @asynccontextmanager
    async def translated(
        self, what: str, bulk: bool = False, extra_s: float = 0.0
    ) -> AsyncIterator[None]:
        """Bound the call in time (`extra_s` more than usual) and turn client errors
        into CacheUnavailable."""
        timed_out = _TIMED_OUT.get()
        if timed_out and timed_out[0] and not bulk:
            raise CacheUnavailable(f"redis: {what} skipped: this request's Redis timed out")
        try:
            async with asyncio.timeout((self.bulk_timeout_s if bulk else self.timeout_s) + extra_s):
                yield
        except TimeoutError as exc:
            if timed_out is not None:
                timed_out[0] = True
            raise CacheUnavailable(f"redis: {what} timed out") from exc
        except ShortOfReplicas as exc:
            raise NotReplicated(f"redis: {what}: {exc}") from exc
        except ResponseError as exc:
            if str(exc).startswith("NOGROUP"):
                raise ConsumerGroupLost(f"redis: {what}: the consumer group is gone") from exc
            raise CacheUnavailable(f"redis: {what} failed: {exc.__class__.__name__}") from exc
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis: {what} failed: {exc.__class__.__name__}") from exc

    async def close(self) -> None:
        """Close every connection, whatever closing one of them raises: redis-py's pool
        re-raises the first error of its disconnects (a connection to a server that
        died may fail to close), which used to leave the rest open."""
        pool = self.client.connection_pool
        closing: list[Callable[[], Awaitable[None]]] = [self.pinned.close, self.client.aclose]
        # the sentinels' own clients are not the pool's: closing the client leaves them
        if isinstance(pool, SentinelConnectionPool):
            closing += [s.aclose for s in pool.sentinel_manager.sentinels]
        for close in closing:
            with contextlib.suppress(RedisError, OSError):
                await close()

    async def ping(self) -> None:
        async with self.translated("ping"):
            await self.client.ping()  # type: ignore[misc]

    # -- reads ---------------------------------------------------------------

    async def current_generation(self) -> int | None:
        async with self.translated("read current generation"):
            raw = await self.client.get(keys.CURRENT)
        return int(raw) if raw else None

    async def serving_state(self) -> tuple[int | None, int]:
        """(serving generation or None, epoch) in one read."""
        async with self.translated("read serving state"):
            gen, epoch = await self.client.mget([keys.CURRENT, keys.EPOCH])
        return (int(gen) if gen else None), (int(epoch) if epoch else 0)

    async def manifest(self, gen: int) -> dict[str, Any]:
        async with self.translated("read manifest"):
            raw = await self.client.get(keys.gen_key(keys.KIND_MANIFEST, gen))
        return orjson.loads(raw) if raw else {}

    async def acl_lengths(self, gen: int) -> dict[int, tuple[int, ...]]:
        """The ACL prefix lengths a generation holds, per IP version (its manifest)."""
        doc = await self.manifest(gen)
        return {
            4: tuple(int(n) for n in doc.get("acl_v4_lengths", ())),
            6: tuple(int(n) for n in doc.get("acl_v6_lengths", ())),
        }

    async def hash_all(self, kind: str, gen: int) -> dict[str, bytes]:
        async with self.translated(f"read {kind}"):
            raw = await self.client.hgetall(keys.gen_key(kind, gen))  # type: ignore[misc]
        return {k.decode(): v for k, v in raw.items()}

    async def hget(self, kind: str, gen: int, field: str) -> bytes | None:
        async with self.translated(f"read {kind}"):
            value: bytes | None = await self.client.hget(keys.gen_key(kind, gen), field)  # type: ignore[misc]
        return value

    async def hmget(self, kind: str, gen: int, fields: Sequence[str]) -> list[bytes | None]:
        if not fields:
            return []
        async with self.translated(f"read {kind}"):
            values: list[bytes | None] = await self.client.hmget(
                keys.gen_key(kind, gen), list(fields)
            )  # type: ignore[misc]
        return values

    async def identity_probe(
        self, gen: int, *, acl_probes: Sequence[str], username: str | None
    ) -> IdentityProbe:
        """One pipeline: the generation check, the ACL probes and the credential.

        The credential's read-through entry comes too (a generation miss reads
        through for credentials); an ACL miss in a generation is final.
        """
        async with self.translated("identity probe"):
            pipe = self.client.pipeline(transaction=False)
            pipe.get(keys.CURRENT)
            pipe.hmget(keys.gen_key(keys.KIND_ACL, gen), list(acl_probes) or ["-"])
            if username is not None:
                pipe.hget(keys.gen_key(keys.KIND_CRED, gen), username)
                pipe.get(keys.readthrough("cred", username, self.epoch))
            out = await pipe.execute()
        cred, cred_rt = (out[2], out[3]) if username is not None else (None, None)
        return IdentityProbe(
            current=int(out[0]) if out[0] else None,
            acl=out[1] if acl_probes else [],
            cred=cred,
            cred_rt=cred_rt,
        )

    async def registrations(self, trunk_ids: Sequence[str]) -> dict[str, bytes | None]:
        if not trunk_ids:
            return {}
        async with self.translated("read registrations"):
            values = await self.client.mget([keys.registration(t) for t in trunk_ids])
        return dict(zip(trunk_ids, values, strict=True))

    async def get_readthrough(self, kind: str, key: str) -> bytes | None:
        async with self.translated("read-through get"):
            value: bytes | None = await self.client.get(keys.readthrough(kind, key, self.epoch))
        return value

    async def set_readthrough(self, kind: str, key: str, value: bytes, ttl_s: int) -> None:
        async with self.translated("read-through set"):
            await self.client.set(keys.readthrough(kind, key, self.epoch), value, ex=ttl_s)

    # -- warmer ----------------------------------------------------------------

    async def acquire_lock(self, owner: str, ttl_s: int) -> bool:
        async with self.translated("warmer lock"):
            return bool(await self.client.set(keys.WARMER_LOCK, owner, nx=True, ex=ttl_s))

    async def holds_lock(self, owner: str) -> bool:
        async with self.translated("warmer lock check"):
            return bool(await self.client.get(keys.WARMER_LOCK) == owner.encode())

    async def release_lock(self, owner: str) -> None:
        async with self.translated("warmer unlock"):
            if await self.client.get(keys.WARMER_LOCK) == owner.encode():
                await self.client.delete(keys.WARMER_LOCK)

    async def next_generation(self) -> int:
        async with self.translated("allocate generation"):
            return int(
                await self.scripts["next_generation"](
                    keys=NextGenerationKeys(keys.SEQUENCE),
                    args=NextGenerationArgv(time.time_ns() // 10**6),
                )
            )

    async def write_hash(self, kind: str, gen: int, mapping: Mapping[str, bytes]) -> None:
        """Write a generation hash in batches; it expires unless `switch` adopts it. The
        fields go as JSON arrays through scripts/hset_packed.lua, PACKED_BATCH a call:
        one string for redis-py to pack instead of two arguments per field."""
        name = keys.gen_key(kind, gen)
        items = [x for field, value in mapping.items() for x in (field, value.decode())]
        step = PACKED_BATCH * 2
        async with self.translated(f"write {kind}", bulk=True):
            pipe = self.client.pipeline(transaction=False)
            for i in range(0, len(items), step):
                await self.scripts["hset_packed"](
                    keys=HsetPackedKeys(name),
                    args=HsetPackedArgv(orjson.dumps(items[i : i + step]), keys.BUILD_TTL_S),
                    client=pipe,
                )
            await pipe.execute()

    async def write_manifest(self, gen: int, doc: Mapping[str, Any]) -> None:
        async with self.translated("write manifest"):
            await self.client.set(
                keys.gen_key(keys.KIND_MANIFEST, gen), orjson.dumps(doc), ex=keys.BUILD_TTL_S
            )

    async def switch(self, gen: int, grace_s: int) -> bool:
        async with self.translated("switch generation"):
            done = await self.scripts["switch"](
                keys=SwitchKeys(keys.CURRENT, keys.EPOCH),
                args=flat(SwitchArgv(gen, grace_s), [SwitchEach(k) for k in keys.GENERATION_KINDS]),
            )
        return bool(done)

    async def patch(
        self,
        gen: int | None,
        sets: Mapping[str, Mapping[str, bytes]],
        dels: Mapping[str, Sequence[str]],
        manifest: Mapping[str, Any] | None,
    ) -> int:
        """Apply one batch of changes to the serving generation in one MULTI (a decision
        sees all of it or none) and bump the epoch; returns the new epoch. With no
        generation (gen None) only the epoch moves, which drops read-through answers."""
        async with self.translated("patch generation", bulk=True):
            pipe = self.client.pipeline(transaction=True)
            if gen is not None:
                for kind, mapping in sets.items():
                    items = list(mapping.items())
                    for i in range(0, len(items), HSET_BATCH):
                        pipe.hset(keys.gen_key(kind, gen), mapping=dict(items[i : i + HSET_BATCH]))
                for kind, fields in dels.items():
                    if fields:
                        pipe.hdel(keys.gen_key(kind, gen), *fields)
                if manifest is not None:
                    pipe.set(keys.gen_key(keys.KIND_MANIFEST, gen), orjson.dumps(manifest))
            pipe.incr(keys.EPOCH)
            out = await pipe.execute()
        return int(out[-1])

    async def write_heartbeat(self, doc: Mapping[str, Any], ttl_s: int) -> None:
        async with self.translated("heartbeat"):
            await self.client.set(keys.HEARTBEAT, orjson.dumps(doc), ex=ttl_s)

    async def heartbeat(self) -> dict[str, Any] | None:
        """The last full load's summary, as the warmer wrote it (for people)."""
        async with self.translated("read heartbeat"):
            raw = await self.client.get(keys.HEARTBEAT)
        return orjson.loads(raw) if raw else None

    async def heartbeat_at(self) -> float | None:
        """When the last full load finished (Unix time), None without one."""
        beat = await self.heartbeat()
        return float(beat["at"]) if beat else None

    async def restore_registrations(self, regs: Mapping[str, tuple[bytes, int]]) -> int:
        """Put database registrations back where Redis lost them (never over a live one)."""
        async with self.translated("restore registrations", bulk=True):
            results: list[Any] = []
            if regs:
                pipe = self.client.pipeline(transaction=False)
                for trunk_id, (value, ttl) in regs.items():
                    pipe.set(keys.registration(trunk_id), value, ex=ttl, nx=True)
                pipe.sadd(keys.TRUNKS_ONLINE, *regs)
                results = (await pipe.execute())[:-1]
            await self._prune()
        return sum(1 for r in results if r)

    async def prune_online(self) -> int:
        """Drop trunks whose registration key has lapsed from trunks:online."""
        async with self.translated("prune online trunks"):
            return await self._prune()

    async def _prune(self) -> int:
        removed = await self.scripts["prune_online"](
            keys=PruneOnlineKeys(keys.TRUNKS_ONLINE),
            args=PruneOnlineArgv(keys.REGISTRATION_PREFIX),
        )
        return int(removed)
