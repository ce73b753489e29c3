"""Changes reach decisions without a full reload: every kind of row, changed and deleted by
plain SQL, is applied by the follower to the serving generation in place."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from ipaddress import ip_address
from typing import Any

import asyncpg
import orjson
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.db import decks
from sipdata.db.changes import ChangeLog
from sipdata.db.provision import demo_id
from sipdata.decide import digest
from sipdata.decide.changes import MAX_PATCHED_PREFIXES
from sipdata.decide.invite import InviteQuery
from sipdata.decide.ratedeck import DeckRow
from sipdata.errors import SchemaOutdated, StoreRejected
from sipdata.jobs import derive, follow
from sipdata.jobs.follow import Follower
from sipdata.serving import probes
from sipdata.settings import Settings

from .calls import eventually
from .conftest import Api, warmer

pytestmark = pytest.mark.usefixtures("warm")

ACME = demo_id("org:acme")
ACME_IP = demo_id("trunk:acme-ip")
ALPHA, BRAVO, CHARLIE = (demo_id(f"org:{c}") for c in ("alpha", "bravo", "charlie"))
CALL = {"source_ip": "127.0.0.10", "to": "12125551234"}

Change = Callable[..., Awaitable[None]]


@pytest.fixture
def follower(settings: Settings, cache: Cache, pool: asyncpg.Pool) -> Follower:
    return Follower(warmer(settings, cache, pool), ChangeLog(pool))


@pytest.fixture
def change(pool: asyncpg.Pool, follower: Follower, api: Api, cache: Cache) -> Change:
    """Run SQL as an operator would, then one follower round and one catalog refresh;
    asserts the generation was patched in place (never switched)."""

    async def run(sql: str, *args: Any) -> None:
        gen = await cache.current_generation()
        async with pool.acquire() as conn:
            await conn.execute(sql, *args)
        assert await follower.step() >= 1
        await api.refresh()
        assert await cache.current_generation() == gen

    return run


async def test_a_suspended_trunk_is_refused_and_reinstated(api: Api, change: Change) -> None:
    """Suspending a trunk refuses its next call; reactivating it routes again."""
    assert (await api.decide(**CALL))["verdict"] == "route"
    await change("UPDATE sip_trunks SET status = 'suspended' WHERE id = $1", ACME_IP)
    assert (await api.decide(**CALL))["code"] == 403
    await change("UPDATE sip_trunks SET status = 'active' WHERE id = $1", ACME_IP)
    assert (await api.decide(**CALL))["verdict"] == "route"


async def test_a_suspended_org_stops_all_its_trunks(api: Api, change: Change) -> None:
    """An org's status reaches every trunk of the org (credentials and ACL alike)."""
    await change("UPDATE organizations SET status = 'suspended' WHERE id = $1", ACME)
    assert (await api.decide(**CALL))["code"] == 403
    _, cred = await api.get("/v1/credentials", username="acme-pbx")
    assert cred["verdict"] == "reject" and cred["source"] == "generation"


async def test_a_new_password_and_a_renamed_user(
    api: Api, change: Change, settings: Settings
) -> None:
    """A new password gives the new HA1 at once; a renamed user is found under the new
    name only (the old name is gone from the generation, not left stale: a miss there
    reads through to the database, which does not have it either)."""
    ha1 = digest.encode("acme-pbx", settings.realm, "rotated")
    await change("UPDATE sip_trunks SET password_hash = $1 WHERE username = 'acme-pbx'", ha1)
    _, body = await api.get("/v1/credentials", username="acme-pbx")
    assert body["ha1_md5"] == digest.ha1("MD5", "acme-pbx", settings.realm, "rotated")
    await change("UPDATE sip_trunks SET username = 'acme-pbx2' WHERE username = 'acme-pbx'")
    _, old = await api.get("/v1/credentials", username="acme-pbx")
    _, new = await api.get("/v1/credentials", username="acme-pbx2")
    assert old["found"] is False
    assert (new["verdict"], new["source"]) == ("ok", "generation")


async def test_an_acl_row_added_then_deleted(api: Api, change: Change) -> None:
    """A new ACL row lets its address in, with a prefix length the generation had not
    seen; deleting it shuts the address out again."""
    ip = {"source_ip": "10.9.8.7", "to": "12125551234"}
    assert (await api.decide(**ip))["code"] == 407
    await change(
        "INSERT INTO trunk_acl (trunk_id, ip_address, subnet_mask) VALUES ($1, '10.9.0.0/16', 16)",
        ACME_IP,
    )
    body = await api.decide(**ip)
    assert body["verdict"] == "route" and body["explain"]["sources"]["acl"] == "generation"
    await change("DELETE FROM trunk_acl WHERE ip_address = '10.9.0.0/16'")
    assert (await api.decide(**ip))["code"] == 407


async def test_a_did_assigned_moved_and_deleted(api: Api, change: Change) -> None:
    """A DID's assignment, its move to another trunk and its deletion each show at once."""
    number = "12125550101"
    _, body = await api.get("/v1/did", number=number)
    assert body["trunk"]["name"] == "acme-ip"
    pbx = demo_id("trunk:acme-pbx")
    await change("UPDATE phone_numbers SET trunk_id = $1 WHERE number = $2", pbx, number)
    _, moved = await api.get("/v1/did", number=number)
    assert moved["trunk"]["name"] == "acme-pbx"
    await change("DELETE FROM phone_numbers WHERE number = $1", number)
    _, gone = await api.get("/v1/did", number=number)
    assert gone["found"] is False


async def test_a_rule_added_then_deleted(api: Api, change: Change) -> None:
    """A new reject rule refuses the next call; deleting it routes the call again."""
    await change(
        "INSERT INTO routing_rules (org_id, name, priority, match_type, match_pattern, action,"
        " destination) VALUES ($1, 'block-nyc', 1, 'prefix', '1212', 'reject',"
        " '403 Blocked Destination')",
        ACME,
    )
    body = await api.decide(**CALL)
    assert (body["verdict"], body["reason"]) == ("reject", "Blocked Destination")
    await change("DELETE FROM routing_rules WHERE name = 'block-nyc'")
    assert (await api.decide(**CALL))["verdict"] == "route"


async def test_a_rule_target_sees_its_trunk_change(api: Api, change: Change, cache: Cache) -> None:
    """A rule embeds its target trunk: suspending the target rewrites the org's rules."""
    gw = demo_id("trunk:charlie-gw")
    await change("UPDATE sip_trunks SET status = 'suspended' WHERE id = $1", gw)
    gen = await cache.current_generation()
    assert gen is not None
    raw = await cache.hget(keys.KIND_CUSTOM, gen, ACME)
    assert raw is not None
    assert orjson.loads(raw)["targets"][gw]["status"] == "suspended"


async def test_a_rate_row_added_changed_and_deleted(api: Api, change: Change) -> None:
    """A row at a new, longer prefix becomes that prefix's entry; a changed rate
    re-ranks; deleting it restores the previous answer; a change at a short prefix
    reaches every longer prefix that inherits it."""

    async def order() -> tuple[str, list[tuple[str, str]]]:
        _, body = await api.get("/v1/lcr", number="12125551234")
        return body["prefix"], [(o["carrier_id"], o["prefix"]) for o in body["offers"]]

    before = await order()
    assert before == ("12125", [(BRAVO, "1"), (CHARLIE, "1"), (ALPHA, "1212")])
    today = dt.date.today()
    await change(
        "INSERT INTO lcr_rates (carrier_id, prefix, rate, effective_date) "
        "VALUES ($1, '121255', 0.0010, $2)",
        ALPHA,
        today,
    )
    assert await order() == ("121255", [(ALPHA, "121255"), (BRAVO, "1"), (CHARLIE, "1")])
    await change("UPDATE lcr_rates SET rate = 0.0300 WHERE prefix = '121255'")
    assert (await order())[1][-1] == (ALPHA, "121255")
    await change("DELETE FROM lcr_rates WHERE prefix = '121255'")
    assert await order() == before
    await change(
        "UPDATE lcr_rates SET rate = 0.0200 WHERE prefix = '1' AND carrier_id = $1 "
        "AND effective_date = '2025-06-01'",
        BRAVO,
    )
    assert await order() == ("12125", [(CHARLIE, "1"), (ALPHA, "1212"), (BRAVO, "1")])


async def test_a_new_carrier_with_its_first_rate_and_gateway(
    api: Api, change: Change, pool: asyncpg.Pool
) -> None:
    """A new carrier org with a gateway trunk is offered once its first rate row exists."""
    delta = demo_id("org:new-carrier")
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, 'Delta')", delta)
        await conn.execute(
            "INSERT INTO sip_trunks (org_id, name, username, auth_type, allowed_ips) "
            "VALUES ($1, 'delta-gw', 'delta-gw', 'ip', '[\"127.0.0.104/32\"]')",
            delta,
        )
    await change(
        "INSERT INTO lcr_rates (carrier_id, prefix, rate, effective_date) "
        "VALUES ($1, '1', 0.001, $2)",
        delta,
        dt.date(2025, 1, 1),
    )
    _, body = await api.get("/v1/lcr", number="12125551234")
    assert body["offers"][0]["carrier_id"] == delta
    assert body["offers"][0]["gateways"] == ["127.0.0.104"]


async def test_changes_nobody_decides_on_are_not_changes(pool: asyncpg.Pool) -> None:
    """The channel-count write-back touches sip_trunks every few seconds: it leaves no
    change row (the trigger ignores the columns decisions do not read)."""
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM sipdata_changes")
        await conn.execute("UPDATE sip_trunks SET channels_in_use = channels_in_use + 1")
        assert await conn.fetchval("SELECT count(*) FROM sipdata_changes") == 0
        await conn.execute("UPDATE sip_trunks SET max_channels = 7 WHERE id = $1", ACME_IP)
        assert await conn.fetchval("SELECT count(*) FROM sipdata_changes") == 1


async def test_read_through_answers_are_dropped_by_a_change(
    api: Api, change: Change, cache: Cache, settings: Settings
) -> None:
    """A cached database answer ("no such user") does not outlive a change: the new
    user is found at once, not after the negative TTL."""
    _, before = await api.get("/v1/credentials", username="newbie")
    assert before["found"] is False
    ha1 = digest.encode("newbie", settings.realm, "pw")
    await change(
        "INSERT INTO sip_trunks (org_id, name, username, password_hash) "
        "VALUES ($1, 'newbie', 'newbie', $2)",
        ACME,
        ha1,
    )
    _, after = await api.get("/v1/credentials", username="newbie")
    assert after["verdict"] == "ok"


async def test_a_lost_notification_is_healed_by_the_poll(
    api: Api, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """With no NOTIFY at all (the follower does not LISTEN), the periodic poll alone
    carries a change to decisions."""
    follower = Follower(warmer(settings, cache, pool), ChangeLog(pool), wakeup=None)
    task = asyncio.create_task(follower.run())
    try:
        async with pool.acquire() as conn:
            await conn.execute("UPDATE sip_trunks SET status = 'suspended' WHERE id = $1", ACME_IP)

        async def refused() -> bool:
            return bool((await api.decide(**CALL))["verdict"] == "reject")

        async def drained() -> bool:
            async with pool.acquire() as conn:
                return not await conn.fetchval("SELECT count(*) FROM sipdata_changes")

        await eventually(refused, "the suspension reaches decisions")
        await eventually(drained, "the change is deleted once applied")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_deck_import_leaves_the_old_deck_whole(
    api: Api, pool: asyncpg.Pool, follower: Follower
) -> None:
    """An import the database refuses half-way writes nothing and queues no change: the
    serving deck is the old one, whole."""
    _, before = await api.get("/v1/lcr", number="12125551234")
    good = [
        DeckRow(f"1{i:04d}", Decimal("0.001"), dt.date(2025, 1, 1), None, 1, None)
        for i in range(3000)
    ]
    bad = DeckRow("1" * 25, Decimal("0.001"), dt.date(2025, 1, 1), None, 1, None)  # > VARCHAR(20)
    with pytest.raises(StoreRejected):
        await decks.import_rates(pool, ALPHA, [*good, bad], replace=True)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sipdata_changes WHERE op = 'B'") == 0
    await follower.step()
    await api.refresh()
    _, after = await api.get("/v1/lcr", number="12125551234")
    assert (after["prefix"], after["offers"]) == (before["prefix"], before["offers"])


async def test_a_small_deck_import_is_patched_in_place(
    api: Api, pool: asyncpg.Pool, follower: Follower, cache: Cache
) -> None:
    """Importing a carrier's deck of a few prefixes recompiles only those prefixes and
    the ones under them, in place: no new generation."""
    gen = await cache.current_generation()
    rows = [DeckRow("1212", Decimal("0.0001"), dt.date(2025, 1, 1), None, 1, None)]
    await decks.import_rates(pool, ALPHA, rows, replace=True)
    assert await follower.step() >= 1
    await api.refresh()
    assert await cache.current_generation() == gen
    _, body = await api.get("/v1/lcr", number="12125551234")
    assert body["offers"][0]["carrier_id"] == ALPHA and body["prefix"] == "12125"
    _, uk = await api.get("/v1/lcr", number="442071234567")
    assert ALPHA not in [o["carrier_id"] for o in uk["offers"]]  # replaced: 44 is gone


async def test_a_big_deck_import_switches_whole(
    api: Api, pool: asyncpg.Pool, settings: Settings, cache: Cache
) -> None:
    """A deck too big to patch in one MULTI builds a new generation: until the switch
    the decisions see the old deck, after it the new one, never a mix."""
    seen: list[list[str]] = []

    async def before_switch(_gen: int) -> None:
        await api.refresh()
        _, mid = await api.get("/v1/lcr", number="12125551234")
        seen.append([o["carrier_id"] for o in mid["offers"]])

    follower = Follower(warmer(settings, cache, pool, before_switch=before_switch), ChangeLog(pool))
    start = dt.date(2025, 1, 1)
    rows = [DeckRow("1", Decimal("0.0001"), start, None, 1, None)] + [
        DeckRow(f"3{i:06d}", Decimal("0.01"), start, None, 1, None)
        for i in range(MAX_PATCHED_PREFIXES)
    ]
    await decks.import_rates(pool, ALPHA, rows, replace=True)
    assert await follower.step() >= 1
    await api.refresh()
    _, after = await api.get("/v1/lcr", number="12125551234")
    assert seen == [[BRAVO, CHARLIE, ALPHA]]
    assert after["offers"][0]["carrier_id"] == ALPHA and after["prefix"] == "12125"


async def test_rows_start_and_expire_at_utc_midnight_without_a_reload(
    api: Api, change: Change
) -> None:
    """With a controlled clock: a row starting tomorrow and one expiring tonight change
    the answer between 23:59:59.999999 and 00:00:00 UTC, and nothing is reloaded or
    patched in between (the compiled entries are exact for every later day)."""
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    await change(
        "INSERT INTO lcr_rates (carrier_id, prefix, rate, effective_date) "
        "VALUES ($1, '1', 0.0001, $2)",
        ALPHA,
        tomorrow,
    )
    await change(
        "UPDATE lcr_rates SET expiry_date = $2 WHERE carrier_id = $1 AND prefix = '1' "
        "AND effective_date = '2025-06-01'",
        BRAVO,
        tomorrow,
    )
    service = api.service
    view = service.catalog.view
    midnight = dt.datetime.combine(tomorrow, dt.time(), dt.UTC)

    async def offers(at: dt.datetime) -> list[tuple[str, str]]:
        body = await probes.lcr_offers(service, "13105551234", at)
        return [(o["carrier_id"], o["rate"]) for o in body["offers"]]

    before = await offers(midnight - dt.timedelta(microseconds=1))
    after = await offers(midnight)
    assert before == [(BRAVO, "0.005000"), (CHARLIE, "0.009000"), (ALPHA, "0.012000")]
    assert after == [(ALPHA, "0.000100"), (BRAVO, "0.006000"), (CHARLIE, "0.009000")]
    await api.refresh()
    assert (service.catalog.view.gen, service.catalog.view.epoch) == (view.gen, view.epoch)
    query = InviteQuery(ip_address("127.0.0.10"), "13105551234", None, "midnight", dry_run=True)
    decided = await service.decide_invite(query, midnight)
    assert decided["routing"]["routes"][0]["uri"] == "sip:13105551234@127.0.0.101"


async def test_a_bulk_edit_by_hand_is_one_full_load(
    api: Api, pool: asyncpg.Pool, settings: Settings, cache: Cache
) -> None:
    """Many more captured changes than batches are worth patching (a big deck edited by
    plain SQL) become one new generation, and every change it reflects is dropped."""
    small = replace(settings, change_batch=10)
    follower = Follower(warmer(small, cache, pool), ChangeLog(pool))
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM sipdata_changes")
        await conn.execute(
            "INSERT INTO lcr_rates (carrier_id, prefix, rate, effective_date) "
            "SELECT $1, '1999' || lpad(n::text, 4, '0'), 0.001, '2025-01-01' "
            "FROM generate_series(1, 150) AS n",
            ALPHA,
        )
    gen = await cache.current_generation()
    assert await follower.step() == 150
    assert await cache.current_generation() != gen
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sipdata_changes") == 0
    await api.refresh()
    _, body = await api.get("/v1/lcr", number="19990150123")
    assert body["prefix"] == "19990150"


async def test_a_database_without_the_change_log_is_named_not_a_traceback(
    api: Api, pool: asyncpg.Pool, settings: Settings, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator who upgraded without `sipdata migrate`: the follower's rounds fail
    with the fix named, decisions go on from the generation, and readiness says why."""
    monkeypatch.setattr(follow, "FAILING_UNREADY_S", 0.0)
    follower = Follower(warmer(settings, cache, pool), ChangeLog(pool))
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE sipdata_changes RENAME TO sipdata_changes_away")
    try:
        with pytest.raises(SchemaOutdated, match="run `sipdata migrate`"):
            await follower.step()
        task = asyncio.create_task(follower.run())
        try:

            async def unready() -> str | None:
                return await follower.readiness({})

            reason = await eventually(unready, "the follower's failure in readiness")
            assert "sipdata migrate" in reason
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert (await api.decide(**CALL))["verdict"] == "route"
    finally:
        async with pool.acquire() as conn:
            await conn.execute("ALTER TABLE sipdata_changes_away RENAME TO sipdata_changes")


async def test_a_trunk_created_then_deleted(api: Api, change: Change) -> None:
    """A new IP trunk serves at once; deleting it removes its ACL entry from the
    generation, not only from the database."""
    trunk_id = demo_id("trunk:temp")
    await change(
        "INSERT INTO sip_trunks (id, org_id, name, username, auth_type, allowed_ips)"
        " VALUES ($1, $2, 'temp', 'temp-gw', 'ip', '[\"10.77.0.0/16\"]')",
        trunk_id,
        ACME,
    )
    ip = {"source_ip": "10.77.1.2", "to": "12125551234"}
    assert (await api.decide(**ip))["verdict"] == "route"
    await change("DELETE FROM sip_trunks WHERE id = $1", trunk_id)
    assert (await api.decide(**ip))["code"] == 407
    _, acl_answer = await api.get("/v1/acl", ip="10.77.1.2")
    assert acl_answer["found"] is False


async def test_a_change_above_too_many_rows_rebuilds_instead_of_patching(
    api: Api, pool: asyncpg.Pool, follower: Follower, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row at a short prefix sits above much of a deck: past MAX_PATCHED_ROWS rows under
    it the follower does not read them next to the decisions; it builds a new
    generation (off the serving loop), which still reflects the change."""
    await follower.step()  # what the demo load queued
    monkeypatch.setattr(derive, "MAX_PATCHED_ROWS", 2)
    gen = await cache.current_generation()
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE lcr_rates SET rate = 0.0001 WHERE carrier_id = $1 AND prefix = '1'", ALPHA
        )
    assert await follower.step() == 1
    await api.refresh()
    assert await cache.current_generation() != gen
    _, body = await api.get("/v1/lcr", number="13105551234")
    assert body["offers"][0]["carrier_id"] == ALPHA
