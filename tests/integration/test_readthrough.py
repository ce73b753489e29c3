"""Cold cache: answers read through to the database, are cached, then come from the snapshot."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db.provision import demo_id
from sipdata.decide import digest
from sipdata.settings import Settings

from .conftest import Api, warmer

pytestmark = pytest.mark.usefixtures("demo")


async def test_cold_decision_reads_everything_from_the_database(api: Api) -> None:
    """With no generation in Redis a decision reads the database, and the same question
    then comes from the read-through entries."""
    body = await api.decide(source_ip="127.0.0.10", to="12125551234")
    assert body["explain"]["generation"] is None
    assert set(body["explain"]["sources"].values()) == {"database"}
    assert body["routing"]["routes"][0]["uri"] == "sip:12125551234@127.0.0.102"
    again = await api.decide(source_ip="127.0.0.10", to="12125551234")
    assert again["routing"] == body["routing"]
    assert set(again["explain"]["sources"].values()) == {"readthrough"}


async def test_cold_answers_equal_warm_answers(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """Answers read from the database equal those read from a warm generation."""
    cases = [
        dict(source_ip="127.0.0.10", to="12125551234"),
        dict(source_ip="127.0.1.5", to="02071234567"),
        dict(source_ip="127.0.1.5", to="18005550000", call_id="w1"),
        dict(source_ip="127.0.0.101", to="12125550101"),
        dict(source_ip="127.0.0.10", to="19005550000"),
        dict(source_ip="127.0.0.9", to="12125551234", auth_user="acme-pbx"),
        dict(source_ip="127.0.0.9", to="44207", auth_user="acme-pbx", auth_algorithm="SHA-256"),
    ]
    cold = [await api.decide(**c) for c in cases]
    await warmer(settings, cache, pool).load_once()
    await api.refresh()
    warm = [await api.decide(**c) for c in cases]

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != "explain"}

    assert [strip(c) for c in cold] == [strip(w) for w in warm]
    assert all(w["explain"]["generation"] is not None for w in warm)


async def test_not_found_is_cached_briefly(
    api: Api, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A database "not found" is cached only for the short negative TTL."""
    _, first = await api.get("/v1/credentials", username="newbie")
    assert first["found"] is False and first["source"] == "database"
    _, second = await api.get("/v1/credentials", username="newbie")
    assert second["found"] is False and second["source"] == "readthrough"
    cache = api.service.cache
    ttl = await cache.client.ttl(keys.readthrough("cred", "newbie", cache.epoch))
    assert 0 < ttl <= settings.negative_ttl_s


async def test_new_trunk_works_before_the_next_warm(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """Credentials read through on a generation miss: provisioning takes effect at once."""
    await warmer(settings, cache, pool).load_once()
    await api.refresh()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO sip_trunks (org_id, name, username, password_hash, auth_type) "
            "VALUES ($1::uuid, 'fresh', 'fresh-pbx', $2, 'digest')",
            demo_id("org:acme"),
            digest.encode("fresh-pbx", settings.realm, "pw"),
        )
    body = await api.decide(source_ip="127.0.0.9", to="12125551234", auth_user="fresh-pbx")
    assert body["verdict"] == "route" and body["explain"]["sources"]["credential"] == "database"
    assert body["auth"]["ha1"] == digest.ha1("MD5", "fresh-pbx", settings.realm, "pw")


async def test_unknown_numbers_do_not_reach_the_database_once_warm(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """Outbound calls to non-DID numbers are answered from the snapshot alone."""
    await warmer(settings, cache, pool).load_once()
    await api.refresh()
    for n in range(5):
        body = await api.decide(source_ip="127.0.0.10", to=f"1212555{n:04d}")
        assert set(body["explain"]["sources"].values()) == {"generation"}
    assert await cache.client.keys("rt:*") == []
