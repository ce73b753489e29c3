"""Redis reads and writes in the shapes the decisions need; Redis errors become CacheUnavailable.

(`type: ignore[misc]` below: redis-py types its asyncio commands as
`Awaitable[T] | T`, shared with the sync client; on this client they are awaitable.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from sipdata.cache import keys
from sipdata.errors import CacheUnavailable, ConsumerGroupLost
from sipdata.settings import Settings

HSET_BATCH = 2000  # fields per HSET: big enough to amortise, small enough not to stall Redis


def connect(settings: Settings) -> aioredis.Redis:
    # No socket_timeout: redis-py's own read timeout swallows task cancellation
    # now and then (tests/integration/test_cancellation.py), which would let a
    # request outlive its deadline. Cache bounds every call with asyncio.timeout.
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_ms / 1000,
        max_connections=256,
        decode_responses=False,
    )


@dataclass(frozen=True, slots=True)
class FirstRound:
    """What the first round trip of a decision brought back (raw bytes, None = absent)."""

    current: int | None
    acl: list[bytes | None]
    cred: bytes | None
    cred_rt: bytes | None
    lcr: list[bytes | None]
    did: bytes | None
    did_rt: bytes | None


class Lane:
    """Connections of the client's pool, each used one command at a time, for the
    decision's single script call.

    redis-py's client call costs as much CPU again as the command itself (the
    pool's lock, a health-check read on every checkout, the retry wrapper):
    twice the calls per second over these connections in a probe here. A
    connection whose reply did not arrive in full (an error, a cancellation) is
    closed by redis-py and never reused, so no caller reads another's reply.
    """

    def __init__(self, client: aioredis.Redis, idle_max: int = 64) -> None:
        self.pool = client.connection_pool
        self.idle_max = idle_max
        self._idle: list[Any] = []

    async def script(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        conn = self._idle.pop() if self._idle else self.pool.make_connection()  # type: ignore[no-untyped-call]
        if not conn.is_connected:
            await conn.connect()
        try:
            await conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                reply = await conn.read_response()
            except NoScriptError:  # a restarted Redis: load it, ask again
                await conn.send_command("SCRIPT", "LOAD", script.script)
                await conn.read_response()
                await conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                reply = await conn.read_response()
        except ResponseError:
            await self._keep(conn)  # an error reply is a whole reply: the connection is fine
            raise
        except (OSError, RedisError):
            # A broken connection (Redis restarted?): the idle ones are as old as
            # this one, so drop them all rather than fail the next calls one by one.
            await conn.disconnect(nowait=True)
            await self.close()
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        await self._keep(conn)
        return reply

    async def _keep(self, conn: Any) -> None:
        if conn.is_connected and len(self._idle) < self.idle_max:
            self._idle.append(conn)
        else:
            await conn.disconnect(nowait=True)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect(nowait=True)


class Cache:
    """The serving store, as sipdata uses it."""

    def __init__(
        self, client: aioredis.Redis, timeout_s: float = 0.25, bulk_timeout_s: float = 30.0
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s  # per call on the request path
        self.bulk_timeout_s = bulk_timeout_s  # per batch of a warmer load
        self.lane = Lane(client)
        self._switch = client.register_script(keys.SWITCH_LUA)
        self._next_generation = client.register_script(keys.NEXT_GENERATION_LUA)
        self._org_routing = client.register_script(keys.ORG_ROUTING_LUA)
        self._prune_online = client.register_script(keys.PRUNE_ONLINE_LUA)

    @classmethod
    def from_settings(cls, settings: Settings) -> Cache:
        return cls(connect(settings), timeout_s=settings.redis_timeout_ms / 1000)

    @asynccontextmanager
    async def translated(self, what: str, bulk: bool = False) -> AsyncIterator[None]:
        """Bound the call in time and turn client errors into CacheUnavailable."""
        try:
            async with asyncio.timeout(self.bulk_timeout_s if bulk else self.timeout_s):
                yield
        except TimeoutError as exc:
            raise CacheUnavailable(f"redis: {what} timed out") from exc
        except ResponseError as exc:
            if str(exc).startswith("NOGROUP"):
                raise ConsumerGroupLost(f"redis: {what}: the consumer group is gone") from exc
            raise CacheUnavailable(f"redis: {what} failed: {exc.__class__.__name__}") from exc
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis: {what} failed: {exc.__class__.__name__}") from exc

    async def close(self) -> None:
        await self.lane.close()
        await self.client.aclose()

    async def ping(self) -> None:
        async with self.translated("ping"):
            await self.client.ping()  # type: ignore[misc]

    # -- reads ---------------------------------------------------------------

    async def current_generation(self) -> int | None:
        async with self.translated("read current generation"):
            raw = await self.client.get(keys.CURRENT)
        return int(raw) if raw else None

    async def manifest(self, gen: int) -> dict[str, Any] | None:
        async with self.translated("read manifest"):
            raw = await self.client.get(keys.gen_key(keys.KIND_MANIFEST, gen))
        return orjson.loads(raw) if raw else None

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

    async def first_round(
        self,
        gen: int,
        *,
        acl_probes: Sequence[str],
        username: str | None,
        lcr_probes: Sequence[str],
        number: str,
    ) -> FirstRound:
        """One pipeline: generation check, ACL probes, credential, LCR prefixes, DID.

        Read-through entries are fetched only where a generation miss may read
        through (credential, DID); ACL and LCR misses in a generation are final.
        """
        async with self.translated("first round"):
            pipe = self.client.pipeline(transaction=False)
            pipe.get(keys.CURRENT)
            pipe.hmget(keys.gen_key(keys.KIND_ACL, gen), list(acl_probes) or ["-"])
            if username is not None:
                pipe.hget(keys.gen_key(keys.KIND_CRED, gen), username)
                pipe.get(keys.readthrough("cred", username))
            pipe.hmget(keys.gen_key(keys.KIND_LCR, gen), list(lcr_probes))
            pipe.hget(keys.gen_key(keys.KIND_DID, gen), number)
            pipe.get(keys.readthrough("did", number))
            out = await pipe.execute()
        cur, acl = out[0], out[1]
        if username is not None:
            cred, cred_rt, rest = out[2], out[3], out[4:]
        else:
            cred, cred_rt, rest = None, None, out[2:]
        return FirstRound(
            current=int(cur) if cur else None,
            acl=acl if acl_probes else [],
            cred=cred,
            cred_rt=cred_rt,
            lcr=rest[0],
            did=rest[1],
            did_rt=rest[2],
        )

    async def org_routing(
        self, gen: int, org_id: str | None, trunk_ids: Iterable[str]
    ) -> tuple[bytes | None, dict[str, bytes | None]]:
        """The org's rules doc and the registrations of the trunks it may route to."""
        async with self.translated("org routing"):
            rules, flat = await self._org_routing(
                keys=[
                    keys.gen_key(keys.KIND_CUSTOM, gen),
                    keys.gen_key(keys.KIND_CUSTOM_TARGETS, gen),
                ],
                args=[org_id or "", *trunk_ids],
            )
        regs = {flat[i].decode(): (flat[i + 1] or None) for i in range(0, len(flat), 2)}
        return rules, regs

    async def registrations(self, trunk_ids: Sequence[str]) -> dict[str, bytes | None]:
        if not trunk_ids:
            return {}
        async with self.translated("read registrations"):
            values = await self.client.mget([keys.registration(t) for t in trunk_ids])
        return dict(zip(trunk_ids, values, strict=True))

    async def get_readthrough(self, kind: str, key: str) -> bytes | None:
        async with self.translated("read-through get"):
            value: bytes | None = await self.client.get(keys.readthrough(kind, key))
        return value

    async def set_readthrough(self, kind: str, key: str, value: bytes, ttl_s: int) -> None:
        async with self.translated("read-through set"):
            await self.client.set(keys.readthrough(kind, key), value, ex=ttl_s)

    # -- warmer ----------------------------------------------------------------

    async def acquire_lock(self, owner: str, ttl_s: int) -> bool:
        async with self.translated("warmer lock"):
            return bool(await self.client.set(keys.WARMER_LOCK, owner, nx=True, ex=ttl_s))

    async def release_lock(self, owner: str) -> None:
        async with self.translated("warmer unlock"):
            if await self.client.get(keys.WARMER_LOCK) == owner.encode():
                await self.client.delete(keys.WARMER_LOCK)

    async def next_generation(self) -> int:
        async with self.translated("allocate generation"):
            return int(
                await self._next_generation(keys=[keys.SEQUENCE], args=[time.time_ns() // 10**6])
            )

    async def write_hash(self, kind: str, gen: int, mapping: Mapping[str, bytes]) -> None:
        """Write a generation hash in batches; it expires unless `switch` adopts it."""
        name = keys.gen_key(kind, gen)
        items = list(mapping.items())
        async with self.translated(f"write {kind}", bulk=True):
            for start in range(0, len(items), HSET_BATCH * 10):
                pipe = self.client.pipeline(transaction=False)
                for i in range(start, min(start + HSET_BATCH * 10, len(items)), HSET_BATCH):
                    pipe.hset(name, mapping=dict(items[i : i + HSET_BATCH]))
                pipe.expire(name, keys.BUILD_TTL_S)
                await pipe.execute()

    async def write_manifest(self, gen: int, doc: Mapping[str, Any]) -> None:
        async with self.translated("write manifest"):
            await self.client.set(
                keys.gen_key(keys.KIND_MANIFEST, gen), orjson.dumps(doc), ex=keys.BUILD_TTL_S
            )

    async def switch(self, gen: int, grace_s: int) -> bool:
        async with self.translated("switch generation"):
            done = await self._switch(
                keys=[keys.CURRENT], args=[gen, grace_s, *keys.GENERATION_KINDS]
            )
        return bool(done)

    async def write_heartbeat(self, doc: Mapping[str, Any], ttl_s: int) -> None:
        async with self.translated("heartbeat"):
            await self.client.set(keys.HEARTBEAT, orjson.dumps(doc), ex=ttl_s)

    async def heartbeat(self) -> dict[str, Any] | None:
        async with self.translated("read heartbeat"):
            raw = await self.client.get(keys.HEARTBEAT)
        return orjson.loads(raw) if raw else None

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
            await self._prune_online(keys=[keys.TRUNKS_ONLINE])
        return sum(1 for r in results if r)

    async def prune_online(self) -> int:
        """Drop trunks whose registration key has lapsed from trunks:online."""
        async with self.translated("prune online trunks"):
            removed = await self._prune_online(keys=[keys.TRUNKS_ONLINE])
        return int(removed)
