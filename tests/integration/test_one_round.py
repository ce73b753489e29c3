"""The decision's fast path on real Redis: a caller already seen in this generation is
decided in one round trip, and the lease that round trip takes is kept, given
back or replaced exactly as the general path would have left it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.settings import Settings

from .conftest import Api, RedisServer, warmer

ACME_IP = demo_id("trunk:acme-ip")
CALL = {"source_ip": "127.0.0.10", "to": "12125551234"}

pytestmark = pytest.mark.usefixtures("warm")


class RoundTrips:
    """Every request the service sends Redis: a command, a whole pipeline, a script."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, cache: Cache, scripts: dict[str, str]
    ) -> None:
        self.sent: list[str] = []
        client = cache.client
        command, pipeline, pinned = client.execute_command, client.pipeline, cache.pinned.script

        async def counted_pinned(script: Any, *args: Any) -> Any:
            self.sent.append(scripts[script.sha])
            return await pinned(script, *args)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            name = str(args[0]).upper()
            if name == "EVALSHA":
                name = scripts.get(args[1], name)
            # The catalog's background refresh is not part of any decision.
            if not (name == "GET" and args[1] == keys.CURRENT):
                self.sent.append(name)
            return await command(*args, **kwargs)

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def run(*a: Any, **k: Any) -> Any:
                self.sent.append("PIPELINE")
                return await execute(*a, **k)

            pipe.execute = run
            return pipe

        monkeypatch.setattr(cache.pinned, "script", counted_pinned)
        monkeypatch.setattr(client, "execute_command", counted)
        monkeypatch.setattr(client, "pipeline", counted_pipeline)

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
async def trips(api: Api, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RoundTrips]:
    scripts = api.service.cache.scripts
    names = {}
    for name, shown in (("decide", "decide"), ("release", "release"), ("lease_docs", "lease docs")):
        await api.service.cache.client.script_load(scripts[name].script)  # no NOSCRIPT retry
        names[scripts[name].sha] = shown
    yield RoundTrips(monkeypatch, api.service.cache, names)


async def lease_of(cache: Cache, call_id: str) -> dict[bytes, bytes]:
    return dict(await cache.client.hgetall(keys.lease(call_id)))


async def test_a_caller_seen_before_is_decided_in_one_round_trip(
    api: Api, trips: RoundTrips
) -> None:
    """A new caller costs the identity probe, the rules and the one trip; a caller seen
    before in this generation, the one trip alone, with the same answer."""
    first = await api.decide(**CALL, call_id="first")
    await api.service.lease_docs.aclose()  # its batched write lands now, not later
    assert len(trips.take()) >= 3  # identity probe, rules, the one trip (+ lease docs)
    second = await api.decide(**CALL, call_id="second")
    await api.service.lease_docs.aclose()
    # The destinations follow in a batched write that the answer does not wait for.
    assert trips.take() == ["decide", "lease docs"]
    assert second["verdict"] == "route" and second["explain"]["admission"] == "ok"
    assert second["routing"] == first["routing"] and second["legs"] == first["legs"]
    assert second["explain"]["sources"]["acl"] == "generation"


async def test_one_round_lease_holds_the_destinations_for_rating(
    api: Api, cache: Cache, trips: RoundTrips
) -> None:
    """The lease taken in the round trip gets the call's destinations (for rating) in the
    batched write after the answer."""
    await api.decide(**CALL, call_id="warm-up")
    answer = await api.decide(**CALL, call_id="rated")
    await api.service.lease_docs.aclose()  # the batched write lands
    lease = await lease_of(cache, "rated")
    doc = orjson.loads(lease[b"doc"])
    assert doc["trunk_id"] == ACME_IP and doc["inbound"] is False
    assert [leg["rate"] for leg in doc["legs"]] == [leg["rate"] for leg in answer["legs"]]
    assert doc["legs"][0]["carrier_id"] == demo_id("org:bravo")


async def test_a_call_that_does_not_route_gives_its_lease_back(
    api: Api, cache: Cache, trips: RoundTrips
) -> None:
    """A call the round trip admitted but a rule rejects gives its lease back at once."""
    await api.decide(**CALL, call_id="warm-up")
    await api.service.lease_docs.aclose()  # the warm-up's batched write, before we count
    trips.take()
    premium = await api.decide(source_ip="127.0.0.10", to="19005551234", call_id="premium")
    assert (premium["verdict"], premium["code"]) == ("reject", 403)
    assert trips.take() == ["decide", "release"]
    assert await lease_of(cache, "premium") == {}
    members = await cache.client.zrange(keys.channels("trunk", ACME_IP), 0, -1)
    assert b"premium" not in members and b"warm-up" in members


async def test_full_trunk_refuses_on_the_one_round_path_as_on_the_general_one(
    api: Api, pool: Any, settings: Settings, cache: Cache
) -> None:
    """A full trunk refuses the next call 503 naming the limit, and no lease is left behind."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE sip_trunks SET max_channels = 1 WHERE id = $1", ACME_IP)
    await warmer(settings, cache, pool).load_once()
    await api.refresh()
    held = await api.decide(**CALL, call_id="held")
    refused = await api.decide(**CALL, call_id="one-too-many")
    assert held["explain"]["admission"] == "ok"
    assert (refused["code"], refused["reason"]) == (503, "Trunk Channel Limit Reached")
    assert refused["explain"]["admission"] == "trunk"
    assert await lease_of(cache, "one-too-many") == {}


async def test_generation_switch_between_calls_is_answered_from_the_new_one(
    api: Api, pool: Any, settings: Settings, cache: Cache, trips: RoundTrips
) -> None:
    """The memo belongs to the old generation: the script sees the switch, admits
    nothing, and the general path answers from the new generation."""
    await api.decide(**CALL, call_id="before")
    old = api.service.catalog.view.gen
    beat = await warmer(settings, cache, pool).load_once()
    assert beat is not None and api.service.catalog.view.gen == old  # not refreshed yet
    after = await api.decide(**CALL, call_id="after")
    assert after["explain"]["generation"] != old and after["explain"]["admission"] == "ok"
    members = await cache.client.zrange(keys.channels("trunk", ACME_IP), 0, -1)
    assert sorted(members) == [b"after", b"before"]


async def test_scripts_flushed_from_redis_are_loaded_again(api: Api, cache: Cache) -> None:
    """After SCRIPT FLUSH the decision loads its script again and still admits."""
    await api.decide(**CALL, call_id="before-flush")
    await cache.client.script_flush()
    answer = await api.decide(**CALL, call_id="after-flush")
    assert answer["verdict"] == "route" and answer["explain"]["admission"] == "ok"


async def test_a_cancelled_script_call_never_hands_its_reply_to_the_next_caller(
    cache: Cache,
) -> None:
    """Redis paused, a call is cancelled while waiting: its late reply must not be
    read by the next call over the same connections."""
    echo = cache.client.register_script("return ARGV[1]")
    await cache.client.script_load(echo.script)
    assert await cache.pinned.script(echo, [], ["warm"]) == b"warm"
    await cache.client.execute_command("CLIENT", "PAUSE", "300", "ALL")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(cache.pinned.script(echo, [], ["stale"]), 0.05)
    assert await cache.pinned.script(echo, [], ["fresh"]) == b"fresh"


async def test_brief_answer_is_flat_and_routes_the_same(api: Api) -> None:
    """What Kamailio asks for: the fields its script reads, each a top-level scalar (it
    decodes the answer once into an xavp, which keeps only the top level), and the
    same route, caller and realm as the full answer."""
    full = await api.decide(**CALL, call_id="full", dry_run="1")
    brief = await api.decide(**CALL, call_id="brief", dry_run="1", brief="1")
    assert "legs" not in brief and "explain" not in brief and "caller" not in brief
    assert brief["routing"] == full["routing"]
    assert (brief["trunk_id"], brief["org_id"], brief["identified_by"]) == (
        full["caller"]["trunk_id"],
        full["caller"]["org_id"],
        full["caller"]["identified_by"],
    )
    assert (brief["verdict"], brief["code"]) == ("route", 200)
    nested = {k for k, v in brief.items() if isinstance(v, dict | list) and k != "routing"}
    assert not nested
    challenged = await api.decide(source_ip="192.0.2.1", to="12125551234", brief="1")
    assert challenged["verdict"] == "challenge" and challenged["realm"]
    assert not any(isinstance(v, dict | list) for v in challenged.values())


async def test_after_a_redis_restart_one_call_fails_and_the_next_reconnects(
    redis_server: RedisServer,
) -> None:
    """Idle connections are as dead as the one that failed: all are dropped at once."""
    cache = Cache(aioredis.Redis.from_url(redis_server.url))
    echo = cache.client.register_script("return ARGV[1]")
    try:
        calls = [cache.pinned.script(echo, [], [str(i)]) for i in range(5)]
        assert await asyncio.gather(*calls) == [b"0", b"1", b"2", b"3", b"4"]
        assert len(cache.pinned._idle) == 5
        redis_server.stop()
        redis_server.start()
        with pytest.raises((ConnectionError, RedisError)):
            await cache.pinned.script(echo, [], ["lost"])
        assert cache.pinned._idle == []
        assert await cache.pinned.script(echo, [], ["back"]) == b"back"  # loaded again too
    finally:
        await cache.close()
