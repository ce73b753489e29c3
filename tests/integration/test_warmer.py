"""The warmer: atomic generation switches, failed loads leave the old data serving."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import replace
from decimal import Decimal

import asyncpg
import orjson
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db import decks
from sipdata.db.provision import demo_id
from sipdata.decide.models import acl_entry_from_json, acl_entry_to_json
from sipdata.decide.ratedeck import DeckRow
from sipdata.errors import CacheUnavailable
from sipdata.settings import Settings

from .conftest import Api, RedisServer, start_api, warmer

pytestmark = pytest.mark.usefixtures("demo")
ALPHA = demo_id("org:alpha")


async def set_alpha_1212(pool: asyncpg.Pool, rate: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE lcr_rates SET rate = $1::numeric WHERE carrier_id = $2::uuid "
            "AND prefix = '1212'",
            rate,
            ALPHA,
        )


async def alpha_rate(api: Api) -> tuple[str, int]:
    _, body = await api.get("/v1/lcr", number="12125551234")
    offer = next(o for o in body["offers"] if o["carrier_id"] == ALPHA)
    return offer["rate"], body["generation"]


async def test_switch_adopts_new_generation_and_retires_the_old(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """A load switches to a new generation; the old one expires after the grace time, the
    heartbeat names the new one."""
    w = warmer(settings, cache, pool)
    first = await w.load_once()
    second = await w.load_once()
    assert first and second and second["generation"] > first["generation"]
    assert await cache.current_generation() == second["generation"]
    for kind in (keys.KIND_LCR, keys.KIND_CRED, keys.KIND_MANIFEST):
        old_ttl = await cache.client.ttl(keys.gen_key(kind, first["generation"]))
        assert 0 < old_ttl <= settings.generation_grace_s
        assert await cache.client.ttl(keys.gen_key(kind, second["generation"])) == -1
    beat = await cache.heartbeat()
    assert beat and beat["generation"] == second["generation"]
    assert 0 < await cache.client.ttl(keys.HEARTBEAT) <= keys.HEARTBEAT_TTL_S


async def test_load_failing_before_switch_leaves_previous_data_serving(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """A load that fails before its switch leaves the previous generation serving, unchanged."""
    beat = await warmer(settings, cache, pool).load_once()
    assert beat
    old = beat["generation"]
    await api.refresh()
    assert await alpha_rate(api) == ("0.010000", old)
    await set_alpha_1212(pool, "0.0777")

    async def explode(gen: int) -> None:
        raise CacheUnavailable("simulated crash between writing and switching")

    with pytest.raises(CacheUnavailable):
        await warmer(settings, cache, pool, before_switch=explode).load_once()
    assert await cache.current_generation() == old
    await api.refresh()
    assert await alpha_rate(api) == ("0.010000", old)
    orphan = int(await cache.client.get(keys.SEQUENCE))
    assert orphan > old
    orphan_ttl = await cache.client.ttl(keys.gen_key(keys.KIND_LCR, orphan))
    assert 0 < orphan_ttl <= keys.BUILD_TTL_S  # the half-load cleans itself up
    assert await cache.client.get(keys.WARMER_LOCK) is None  # lock released on failure
    beat = await warmer(settings, cache, pool).load_once()
    await api.refresh()
    assert beat and await alpha_rate(api) == ("0.077700", beat["generation"])


async def test_redis_out_of_memory_mid_load_keeps_old_generation(
    private_settings: Settings, redis_server: RedisServer, pool: asyncpg.Pool
) -> None:
    """A real failure: Redis refuses writes (maxmemory) half-way through a big deck."""
    cache = Cache.from_settings(private_settings)
    try:
        beat = await warmer(private_settings, cache, pool).load_once()
        assert beat
        api = await start_api(private_settings)
        try:
            before = await api.decide(source_ip="127.0.0.10", to="12125551234")
            used = int((await cache.client.info("memory"))["used_memory"])
            await cache.client.config_set("maxmemory", str(used + 600_000))
            deck = [
                DeckRow(f"3{n:07d}", Decimal("0.01"), dt.date(2025, 1, 1), None, 100, None)
                for n in range(20_000)
            ]
            await decks.import_rates(pool, ALPHA, deck, replace=False)
            with pytest.raises(CacheUnavailable):
                await warmer(private_settings, cache, pool).load_once()
            assert await cache.current_generation() == beat["generation"]
            after = await api.decide(source_ip="127.0.0.10", to="12125551234")
            assert after["routing"] == before["routing"]
            assert after["explain"]["generation"] == beat["generation"]
        finally:
            await api.client.close()
    finally:
        await cache.close()


async def test_a_second_warmer_skips_while_one_is_loading(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """While another warmer holds the lock a load is skipped; after, it runs."""
    assert await cache.acquire_lock("someone-else", 30)
    assert await warmer(settings, cache, pool).load_once() is None
    await cache.release_lock("someone-else")
    assert await warmer(settings, cache, pool).load_once() is not None


async def test_generation_ids_survive_a_redis_restart(cache: Cache) -> None:
    """After Redis loses everything, new ids are still above any id handed out before."""
    first = await cache.next_generation()
    await cache.client.flushdb()
    assert await cache.next_generation() >= first


async def test_a_stale_view_rereads_the_serving_generation(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """A process still on a generation Redis no longer holds must not answer "not found"."""
    api = await start_api(replace(settings, catalog_refresh_s=3600))  # no background refresh
    try:
        old = await warmer(settings, cache, pool).load_once()
        await api.refresh()
        new = await warmer(settings, cache, pool).load_once()
        assert old and new
        for kind in keys.GENERATION_KINDS:
            await cache.client.delete(keys.gen_key(kind, old["generation"]))
        assert api.service.catalog.view.gen == old["generation"]
        body = await api.decide(source_ip="127.0.0.10", to="12125551234")
        assert body["verdict"] == "route"
        assert body["explain"]["generation"] == new["generation"]
    finally:
        await api.client.close()


async def test_an_older_build_never_replaces_a_newer_generation(cache: Cache) -> None:
    """A switch to an older generation than the serving one is refused."""
    await cache.client.set(keys.CURRENT, 7)
    assert await cache.switch(5, 60) is False
    assert await cache.current_generation() == 7


async def test_rate_deck_never_visible_half_loaded(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """Lookups racing a reload of a 30k-prefix deck see all-old or all-new rates, as the
    generation they read says; before the load only the old deck, after it only the new.
    (What a reader sees, not how fast the loop is: a read that timed out on the busy loop
    and went to the database must show the database's deck.)"""
    deck = [
        DeckRow(f"5{n:05d}", Decimal("0.01"), dt.date(2025, 1, 1), None, 100, None)
        for n in range(30_000)
    ]
    await decks.import_rates(pool, ALPHA, deck, replace=False)
    beat = await warmer(settings, cache, pool).load_once()
    assert beat
    await api.refresh()
    new = [replace(r, rate=Decimal("0.02")) for r in deck]
    await decks.import_rates(pool, ALPHA, new, replace=False)
    old_gen = beat["generation"]

    async def read(n: int) -> tuple[int | None, str, str]:
        _, body = await api.get("/v1/lcr", number=f"5{n:05d}12")
        return body["generation"], body["source"], body["offers"][0]["rate"]

    assert await read(0) == (old_gen, "generation", "0.010000")
    load = asyncio.create_task(warmer(settings, cache, pool).load_once())
    try:
        while not load.done():
            for n in (0, 14_999, 29_999):
                with contextlib.suppress(CacheUnavailable):  # a busy loop may time a read out
                    await api.refresh()
                gen, source, rate = await read(n)
                if source == "generation":  # exactly its generation's deck, old or new
                    assert rate == ("0.010000" if gen == old_gen else "0.020000"), (gen, n)
                else:  # Redis timed out on the busy loop: the database, which is new
                    assert rate == "0.020000", (source, n)
    finally:
        new_beat = await load
    assert new_beat and new_beat["generation"] > old_gen
    await api.refresh()
    for n in (0, 14_999, 29_999):
        assert await read(n) == (new_beat["generation"], "generation", "0.020000")


async def test_registrations_restored_where_redis_lost_them_never_over_live_ones(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """Database registrations are restored where Redis lost them, never over a live newer one."""
    pbx, sip = demo_id("trunk:acme-pbx"), demo_id("trunk:globex-sip")
    async with pool.acquire() as conn:
        for trunk_id, contact in ((pbx, "sip:pbx@127.0.0.40"), (sip, "sip:gx@127.0.0.41")):
            await conn.execute(
                "INSERT INTO trunk_registrations (trunk_id, contact, expires_at, status) "
                "VALUES ($1::uuid, $2, now() AT TIME ZONE 'UTC' + interval '300 seconds', "
                "'online')",
                trunk_id,
                contact,
            )
    live = orjson.dumps({"contact": "sip:newer@127.0.0.42", "expires": 2_000_000_000})
    await cache.client.set(keys.registration(sip), live, ex=100)
    await cache.client.sadd(keys.TRUNKS_ONLINE, "gone-trunk")
    beat = await warmer(settings, cache, pool).load_once()
    assert beat and beat["registrations_restored"] == 1
    restored = orjson.loads(await cache.client.get(keys.registration(pbx)))
    assert restored["contact"] == "sip:pbx@127.0.0.40"
    assert 250 < await cache.client.ttl(keys.registration(pbx)) <= 300
    assert orjson.loads(await cache.client.get(keys.registration(sip))) == orjson.loads(live)
    online = {m.decode() for m in await cache.client.smembers(keys.TRUNKS_ONLINE)}
    assert online == {pbx, sip}


async def test_acl_entries_keep_the_shape_the_previous_release_reads(
    settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """A rolling upgrade runs servers of the previous release against a new warmer:
    a generation's ACL value stays the bare list of owners they decode (the bench
    found old servers failing on the {network, owners} shape), and this release reads
    that shape and the read-through entry's alike."""
    beat = await warmer(settings, cache, pool).load_once()
    assert beat
    raw = await cache.hget(keys.KIND_ACL, beat["generation"], "127.0.0.10/32")
    assert raw is not None
    owners = orjson.loads(raw)
    assert isinstance(owners, list) and owners[0]["id"] == demo_id("trunk:acme-ip")
    network, trunks = acl_entry_from_json(owners, "127.0.0.10/32")
    assert network == "127.0.0.10/32" and trunks[0].id == demo_id("trunk:acme-ip")
    assert acl_entry_from_json(acl_entry_to_json(network, trunks), "ignored") == (network, trunks)
