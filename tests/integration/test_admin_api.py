"""The admin API against real PostgreSQL and Redis: API keys and their scopes, tenancy,
optimistic concurrency, the audit trail, secrets kept secret, and writes that reach
decisions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from redis.asyncio import Redis

from sipdata.admin import keys
from sipdata.admin.openapi import document
from sipdata.admin.validate import KeyInput
from sipdata.app import create_app
from sipdata.cache import keys as redis_keys
from sipdata.cache.apikeys import ApiKeyCache
from sipdata.cache.client import Cache
from sipdata.db import admin as db
from sipdata.db.changes import ChangeLog
from sipdata.db.provision import demo_id
from sipdata.http.handlers import SERVICE
from sipdata.jobs.follow import Follower
from sipdata.serving.admin import AdminService
from sipdata.settings import Settings

from .calls import eventually
from .conftest import free_port, warmer
from .test_cli import run
from .test_serve import listening, start_serve

pytestmark = pytest.mark.usefixtures("warm")

ACME, GLOBEX = demo_id("org:acme"), demo_id("org:globex")
EDGE_SECRET = "edge-secret-for-tests"
PASSWORD = "a-long-trunk-password"


class Admin:
    """One app (a node) and the key it asks with."""

    def __init__(self, client: TestClient, secret: str) -> None:
        self.client, self.secret = client, secret

    async def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = None, **headers: str
    ) -> tuple[int, Any, CIMultiDict[str]]:
        token = self.secret if key is None else key
        hdrs = {"Authorization": f"Bearer {token}", **headers}
        resp = await self.client.request(method, path, json=body, headers=hdrs)
        text = await resp.text()
        return resp.status, json.loads(text) if text else None, CIMultiDict(resp.headers)


@pytest.fixture
def admin_settings(settings: Settings) -> Settings:
    return replace(settings, api_token=EDGE_SECRET)


async def make_key(
    pool: asyncpg.Pool, scopes: tuple[str, ...] = ("*",), org: str | None = None, rate: int = 1000
) -> tuple[dict[str, Any], str]:
    who = db.Actor(None, None, None, "tests")
    service = AdminService(db.AdminStore(pool), ApiKeyCache(Cache(Redis())), "sipdata.local")
    try:
        return await service.create_key(who, KeyInput("t", org, scopes, rate, None), org)
    finally:
        await service.cache.cache.close()


@pytest.fixture
async def node(admin_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Admin]:
    _, secret = await make_key(pool)
    client = TestClient(TestServer(create_app(admin_settings)))
    await client.start_server()
    yield Admin(client, secret)
    await client.close()


async def new_trunk(node: Admin, **fields: Any) -> dict[str, Any]:
    body = {"org_id": ACME, "name": "admin-made", "username": "admin-made", "password": PASSWORD}
    status, row, _ = await node.call("POST", "/v1/admin/trunks", {**body, **fields})
    assert status == 201, row
    return dict(row)


async def test_the_admin_api_takes_api_keys_only_and_decisions_never_take_them(
    node: Admin,
) -> None:
    """No key, a malformed or unknown key, or the edge's shared secret: 401 on the admin
    API; an admin key opens no decision endpoint (it cannot read an HA1)."""
    for token in ["", "nonsense", EDGE_SECRET, keys.new_key().secret]:
        status, body, _ = await node.call("GET", "/v1/admin/trunks", key=token)
        assert status == 401 and body["error"]["code"] == "unauthorized", (token, body)
    status, _, _ = await node.call("GET", "/v1/admin/trunks")
    assert status == 200
    status, body, _ = await node.call("GET", "/v1/credentials?username=acme-pbx")
    assert status == 401, body


async def test_a_trunk_password_is_stored_as_ha1_only_and_never_returned(
    node: Admin, pool: asyncpg.Pool
) -> None:
    row = await new_trunk(node)
    assert row["has_password"] is True
    assert "password" not in row and "password_hash" not in row
    stored = await pool.fetchval("SELECT password_hash FROM sip_trunks WHERE id = $1", row["id"])
    assert stored.startswith("ha1v1$") and PASSWORD not in stored
    _, listed, _ = await node.call("GET", f"/v1/admin/trunks?org_id={ACME}&limit=500")
    assert all("password_hash" not in t for t in listed["items"])
    assert stored.split("$")[1] not in json.dumps(listed)


async def test_an_org_bound_key_sees_only_its_org_and_another_orgs_rows_are_404(
    node: Admin, pool: asyncpg.Pool
) -> None:
    """Another org's row reads as missing (404), never 403, whatever the verb; lists hold
    only the key's org."""
    _, acme_key = await make_key(pool, org=ACME)
    globex = demo_id("trunk:globex-ip")
    for method, path, body in [
        ("GET", f"/v1/admin/trunks/{globex}", None),
        ("PATCH", f"/v1/admin/trunks/{globex}", {"status": "suspended"}),
        ("DELETE", f"/v1/admin/trunks/{globex}", None),
        ("GET", f"/v1/admin/trunks/{globex}/acl", None),
        ("POST", f"/v1/admin/trunks/{globex}/acl", {"ip": "192.0.2.7"}),
        ("GET", f"/v1/admin/organizations/{GLOBEX}", None),
    ]:
        status, answer, _ = await node.call(method, path, body, key=acme_key, **{"If-Match": '"x"'})
        assert status == 404, (method, path, answer)
    status, answer, _ = await node.call(
        "POST",
        "/v1/admin/trunks",
        {"org_id": GLOBEX, "name": "x", "username": "sneaky", "password": PASSWORD},
        key=acme_key,
    )
    assert status == 404 and answer["error"]["field"] == "org_id"
    _, listed, _ = await node.call("GET", "/v1/admin/trunks?limit=500", key=acme_key)
    assert listed["items"] and {t["org_id"] for t in listed["items"]} == {ACME}
    status, _, _ = await node.call(
        "POST", "/v1/admin/organizations", {"name": "Mine"}, key=acme_key
    )
    assert status == 403  # only platform keys make orgs


async def test_a_key_without_the_scope_gets_403_and_cannot_mint_a_stronger_key(
    node: Admin, pool: asyncpg.Pool
) -> None:
    _, reader = await make_key(pool, scopes=("trunks:read", "api_keys:write"), org=ACME)
    status, _, _ = await node.call("GET", "/v1/admin/trunks", key=reader)
    assert status == 200
    status, body, _ = await node.call(
        "PATCH", f"/v1/admin/trunks/{demo_id('trunk:acme-ip')}", {"status": "active"}, key=reader
    )
    assert status == 403 and "trunks:write" in body["error"]["message"]
    for wanted in [
        {"scopes": ["trunks:write"]},
        {"scopes": ["*"]},
        {"org_id": GLOBEX, "scopes": ["trunks:read"]},
    ]:
        status, body, _ = await node.call(
            "POST", "/v1/admin/api_keys", {"name": "more", **wanted}, key=reader
        )
        assert status == 403, (wanted, body)


async def test_updates_need_the_current_etag(node: Admin) -> None:
    """No If-Match: 428; a stale one: 412 and nothing changed; the current one: applied,
    with a new ETag."""
    row = await new_trunk(node)
    path = f"/v1/admin/trunks/{row['id']}"
    _, _, headers = await node.call("GET", path)
    tag = headers["ETag"]
    status, _, _ = await node.call("PATCH", path, {"max_channels": 5})
    assert status == 428
    status, _, _ = await node.call("PATCH", path, {"max_channels": 5}, **{"If-Match": tag})
    assert status == 200
    status, body, _ = await node.call("PATCH", path, {"max_channels": 7}, **{"If-Match": tag})
    assert status == 412, body
    _, now, new_headers = await node.call("GET", path)
    assert now["max_channels"] == 5 and new_headers["ETag"] != tag


async def test_acl_input_is_checked_and_a_network_belongs_to_one_tenant(node: Admin) -> None:
    trunk = await new_trunk(node, auth_type="ip", password=None)
    acl = f"/v1/admin/trunks/{trunk['id']}/acl"
    for bad in ["0.0.0.0/0", "10.1.2.3/24", "fe80::1%eth0", "010.0.0.1"]:
        status, body, _ = await node.call("POST", acl, {"ip": bad})
        assert status == 400 and body["error"]["field"] == "ip", (bad, body)
    # the demo data: globex's ACL holds 127.0.1.0/24, carrier alpha's IP trunk allows
    # 127.0.0.101; acme may claim neither, nor a network around them
    for taken in ["127.0.1.128/25", "127.0.0.96/27", "127.0.0.0/8"]:
        status, body, _ = await node.call("POST", acl, {"ip": taken})
        assert status == 409 and "another organization" in body["error"]["message"], body
    status, row, _ = await node.call("POST", acl, {"ip": "198.51.100.0/28"})
    assert status == 201 and row["ip"] == "198.51.100.0/28"
    status, _, _ = await node.call("POST", acl, {"ip": "198.51.100.0/28"})
    assert status == 409  # the same network twice on one trunk


async def test_every_write_leaves_one_audit_row_and_a_refused_write_none(
    node: Admin, pool: asyncpg.Pool
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM audit_logs")
    row = await new_trunk(node)
    await node.call("POST", f"/v1/admin/trunks/{row['id']}/acl", {"ip": "0.0.0.0/0"})  # 400
    await node.call(
        "POST",
        "/v1/admin/trunks",
        {"name": "x", "username": row["username"], "password": PASSWORD, "org_id": ACME},
    )  # 409
    assert await pool.fetchval("SELECT count(*) FROM audit_logs") == before + 1
    status, page, _ = await node.call(
        "GET", f"/v1/admin/audit?resource_type=trunks&resource_id={row['id']}"
    )
    assert status == 200 and len(page["items"]) == 1
    entry = page["items"][0]
    assert entry["action"] == "trunks.create" and entry["before"] is None
    assert entry["after"]["id"] == row["id"] and entry["api_key_id"]
    assert "password" not in json.dumps(entry).replace("has_password", "")


async def test_lists_page_with_a_cursor_and_refuse_bad_parameters(node: Admin) -> None:
    seen: list[str] = []
    path = "/v1/admin/trunks?limit=2"
    while True:
        status, page, _ = await node.call("GET", path)
        assert status == 200 and len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        if page["next_cursor"] is None:
            break
        path = f"/v1/admin/trunks?limit=2&cursor={page['next_cursor']}"
    _, everything, _ = await node.call("GET", "/v1/admin/trunks?limit=500")
    assert seen == [t["id"] for t in everything["items"]] and len(seen) > 2
    for query, field in [("limit=0", "limit"), ("cursor=x", "cursor"), ("colour=red", "colour")]:
        status, body, _ = await node.call("GET", f"/v1/admin/trunks?{query}")
        assert status == 400 and body["error"]["field"] == field, body


async def test_a_revoked_key_stops_on_every_node(
    node: Admin, admin_settings: Settings, pool: asyncpg.Pool, cache: Cache
) -> None:
    """Revoked through one node: refused there at once; another node, which had the key
    cached, refuses it once its cache entry lapses (TTL at most 1 s)."""
    made, secret = await make_key(pool, org=ACME)
    other = TestClient(TestServer(create_app(admin_settings)))
    await other.start_server()
    second = Admin(other, secret)
    try:
        assert (await second.call("GET", "/v1/admin/trunks"))[0] == 200
        ttl = await cache.client.pttl(redis_keys.api_key(keys.hash_key(secret)))
        assert 0 < ttl <= redis_keys.API_KEY_TTL_MS
        status, row, _ = await node.call("DELETE", f"/v1/admin/api_keys/{made['id']}")
        assert status == 200 and row["status"] == "revoked"
        assert (await node.call("GET", "/v1/admin/trunks", key=secret))[0] == 401

        async def refused() -> bool:
            return (await second.call("GET", "/v1/admin/trunks"))[0] == 401

        await eventually(refused, "the second node refusing the revoked key")
    finally:
        await other.close()


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    node: Admin, pool: asyncpg.Pool, cache: Cache
) -> None:
    """The key's count for the minute is shared in Redis: past its limit, 429 with the
    seconds to the window's end, in the one error shape."""
    made, secret = await make_key(pool, rate=3)
    assert (await node.call("GET", "/v1/admin/organizations", key=secret))[0] == 200
    window = int(time.time() // keys.RATE_WINDOW_S)
    for w in (window, window + 1):  # used up now, and in the next window if it turns
        await cache.client.set(redis_keys.api_rate(made["id"], w), 3, ex=120)
    status, body, headers = await node.call("GET", "/v1/admin/organizations", key=secret)
    assert status == 429 and body["error"]["code"] == "rate_limited", body
    assert 1 <= int(headers["Retry-After"]) <= keys.RATE_WINDOW_S


async def test_a_database_away_is_503_never_401(
    admin_settings: Settings, pool: asyncpg.Pool
) -> None:
    """With the database unreachable and the key not cached, the answer says the
    service is unavailable: a 401 would tell the operator the key is wrong."""
    _, secret = await make_key(pool)
    away = replace(admin_settings, database_url="postgresql://postgres@127.0.0.1:1/none")
    client = TestClient(TestServer(create_app(away)))
    await client.start_server()
    try:
        status, body, _ = await Admin(client, secret).call("GET", "/v1/admin/trunks")
        assert status == 503 and body["error"]["code"] == "database_unavailable", body
    finally:
        await client.close()


async def test_with_redis_away_keys_still_work_from_the_database(
    private_settings: Settings, pool: asyncpg.Pool, redis_server: Any
) -> None:
    _, secret = await make_key(pool)
    client = TestClient(TestServer(create_app(replace(private_settings, api_token=EDGE_SECRET))))
    await client.start_server()
    try:
        redis_server.stop()
        status, body, _ = await Admin(client, secret).call("GET", "/v1/admin/organizations")
        assert status == 200, body
    finally:
        await client.close()


async def test_admin_writes_reach_decisions(
    node: Admin, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """A trunk and ACL made through the API route the next call from that network; a
    digest trunk's HA1 is what the edge verifies; a suspension refuses the next call.
    (One follower round stands for the follower serve runs: docs/operations.md.)"""
    follower = Follower(warmer(settings, cache, pool), ChangeLog(pool))
    edge = {"Authorization": f"Bearer {EDGE_SECRET}"}
    trunk = await new_trunk(node, auth_type="ip", password=None, username="admin-ip")
    await node.call("POST", f"/v1/admin/trunks/{trunk['id']}/acl", {"ip": "198.51.100.0/28"})
    digest_trunk = await new_trunk(node, name="admin-digest", username="admin-digest")
    assert await follower.step() >= 1
    service = node.client.server.app

    async def decide() -> dict[str, Any]:
        await service[SERVICE].catalog.refresh()
        resp = await node.client.get(
            "/v1/decide/invite",
            params={
                "source_ip": "198.51.100.5",
                "to": "12125551234",
                "call_id": "a",
                "dry_run": "1",
            },
            headers=edge,
        )
        return dict(await resp.json())

    answer = await decide()
    assert answer["verdict"] == "route", answer
    resp = await node.client.get(
        "/v1/credentials", params={"username": "admin-digest"}, headers=edge
    )
    cred = await resp.json()
    stored = await pool.fetchval(
        "SELECT password_hash FROM sip_trunks WHERE id = $1", digest_trunk["id"]
    )
    assert cred["ha1"] == stored.split("$")[1], cred
    _, _, headers = await node.call("GET", f"/v1/admin/trunks/{trunk['id']}")
    await node.call(
        "PATCH",
        f"/v1/admin/trunks/{trunk['id']}",
        {"status": "suspended"},
        **{"If-Match": headers["ETag"]},
    )
    assert await follower.step() >= 1
    assert (await decide())["code"] == 403


async def test_every_route_is_documented_and_every_documented_route_exists(node: Admin) -> None:
    served = {
        (r.method, r.resource.canonical)
        for r in node.client.server.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    doc = document()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented, served ^ documented
    resp = await node.client.get("/openapi.json")
    assert resp.status == 200 and (await resp.json())["openapi"] == "3.1.0"


async def test_no_answer_log_or_metric_carries_a_secret(
    node: Admin, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    """After trunks and users with passwords, and keys, are made, changed, read and
    audited, neither the answers, the audit trail, /metrics nor the log holds a
    password, an HA1, a password hash or a key."""
    texts: list[str] = []
    trunk = await new_trunk(node)
    user_password = "user-password-never-shown"
    status, user, _ = await node.call(
        "POST",
        "/v1/admin/users",
        {"org_id": ACME, "email": "s@acme.example", "username": "s", "password": user_password},
    )
    assert status == 201
    _, _, headers = await node.call("GET", f"/v1/admin/trunks/{trunk['id']}")
    status, _, _ = await node.call(
        "PATCH",
        f"/v1/admin/trunks/{trunk['id']}",
        {"password": PASSWORD + "-2"},
        **{"If-Match": headers["ETag"]},
    )
    assert status == 200
    _, made, _ = await node.call(
        "POST", "/v1/admin/api_keys", {"name": "k", "scopes": ["trunks:read"]}
    )
    key_secret = made["secret"]
    for path in [
        "/v1/admin/trunks?limit=500",
        f"/v1/admin/trunks/{trunk['id']}",
        "/v1/admin/api_keys?limit=500",
        "/v1/admin/users?limit=500",
        "/v1/admin/audit?limit=500",
    ]:
        texts.append(json.dumps((await node.call("GET", path))[1]))
    texts.append(await (await node.client.get("/metrics")).text())
    texts.append(
        json.dumps(
            [dict(r) for r in await pool.fetch("SELECT metadata FROM audit_logs")], default=str
        )
    )
    texts.append("".join(capsys.readouterr()))
    ha1s = await pool.fetchval("SELECT password_hash FROM sip_trunks WHERE id = $1", trunk["id"])
    user_hash = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    secrets_ = [
        PASSWORD,
        user_password,
        user_hash.split("$")[-1],
        ha1s.split("$")[1],
        ha1s.split("$")[2],
        key_secret,
        keys.hash_key(key_secret),
        node.secret,
    ]
    for text in texts:
        for secret in secrets_:
            assert secret not in text
    assert len(key_secret) > 40


def test_the_command_line_makes_lists_and_revokes_keys(settings: Settings) -> None:
    """`sipdata api-key create` prints the secret once; `list` never shows a secret or a
    hash; `revoke` ends it; a bad scope or time is named, and nothing is made."""
    made = run(settings, "api-key", "create", "--name", "ops", "--scope", "trunks:read")
    assert made.returncode == 0, made.stderr
    row = json.loads(made.stdout)
    assert keys.prefix_of(row["secret"]) == row["key_prefix"] and row["scopes"] == ["trunks:read"]
    listed = run(settings, "api-key", "list")
    assert listed.returncode == 0 and row["id"] in listed.stdout
    assert row["secret"] not in listed.stdout and keys.hash_key(row["secret"]) not in listed.stdout
    revoked = run(settings, "api-key", "revoke", row["id"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    for args, field in [
        (["--scope", "trunks:delete"], "scopes"),
        (["--expires", "2020-01-01T00:00:00Z"], "expires_at"),
        (["--org", "not-a-uuid"], "org_id"),
    ]:
        bad = run(settings, "api-key", "create", "--name", "x", *args)
        assert bad.returncode == 1 and field in bad.stderr and "Traceback" not in bad.stderr
    again = json.loads(run(settings, "api-key", "list").stdout)
    assert [k["id"] for k in again] == [row["id"]]


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"match_type": "regex", "match_pattern": "(1", "action": "lcr"}, "match_pattern", ""),
        (
            {"match_pattern": "1", "action": "reject", "destination": "200 OK"},
            "destination",
            "400..699",
        ),
        (
            {"match_pattern": "1", "action": "forward", "destination": "http://x"},
            "destination",
            "sip:",
        ),
        ({"match_pattern": "1", "action": "trunk", "destination": "nope"}, "destination", "UUID"),
        ({"match_pattern": "1", "action": "trunk"}, "destination", "destination"),
        ({"match_pattern": "12a", "action": "lcr"}, "match_pattern", "digits"),
        (
            {"match_pattern": "1", "action": "lcr", "time_condition": {"days": "often"}},
            "time_condition",
            "",
        ),
    ],
)
async def test_a_rule_the_decision_would_not_compile_is_refused_with_its_reason(
    node: Admin, pool: asyncpg.Pool, body: dict[str, Any], field: str, why: str
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM routing_rules")
    status, answer, _ = await node.call(
        "POST", "/v1/admin/rules", {"org_id": ACME, "name": "r", **body}
    )
    assert status == 400 and answer["error"]["field"] == field, answer
    assert why in answer["error"]["message"]
    assert await pool.fetchval("SELECT count(*) FROM routing_rules") == before


async def test_a_rule_or_number_cannot_point_at_another_orgs_trunk(node: Admin) -> None:
    globex_trunk = demo_id("trunk:globex-sip")
    status, answer, _ = await node.call(
        "POST",
        "/v1/admin/rules",
        {
            "org_id": ACME,
            "name": "r",
            "match_pattern": "1",
            "action": "trunk",
            "destination": globex_trunk,
        },
    )
    assert status == 400 and answer["error"]["field"] == "destination", answer
    status, answer, _ = await node.call(
        "POST",
        "/v1/admin/numbers",
        {
            "number": "+1 212 555 0199",
            "country_code": "1",
            "org_id": ACME,
            "trunk_id": globex_trunk,
        },
    )
    assert status == 400 and answer["error"]["field"] == "trunk_id", answer


async def test_rules_and_numbers_made_through_the_api_reach_decisions(
    node: Admin, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """A number added for a trunk answers /v1/did in canonical form; a rule answers
    /v1/routes/custom for its org; an org-bound key cannot hand the number to another
    org."""
    follower = Follower(warmer(settings, cache, pool), ChangeLog(pool))
    edge = {"Authorization": f"Bearer {EDGE_SECRET}"}
    status, number, _ = await node.call(
        "POST",
        "/v1/admin/numbers",
        {
            "number": "+1 (212) 555-0177",
            "country_code": "1",
            "org_id": ACME,
            "trunk_id": demo_id("trunk:acme-pbx"),
            "status": "active",
        },
    )
    assert status == 201 and number["number"] == "12125550177", number
    status, rule, _ = await node.call(
        "POST",
        "/v1/admin/rules",
        {
            "org_id": ACME,
            "name": "to-uk",
            "match_pattern": "4477",
            "action": "forward",
            "destination": "sip:uk@192.0.2.9",
            "priority": 1,
        },
    )
    assert status == 201, rule
    assert await follower.step() >= 1
    await node.client.server.app[SERVICE].catalog.refresh()
    did = await (
        await node.client.get("/v1/did", params={"number": "12125550177"}, headers=edge)
    ).json()
    assert did["found"] and did["source"] != "database" and did["org_id"] == ACME, did
    assert did["trunk"]["trunk_id"] == demo_id("trunk:acme-pbx"), did
    custom = await (
        await node.client.get(
            "/v1/routes/custom", params={"org_id": ACME, "number": "447700900123"}, headers=edge
        )
    ).json()
    assert rule["id"] in json.dumps(custom) and "sip:uk@192.0.2.9" in json.dumps(custom), custom
    _, acme_key = await make_key(pool, org=ACME)
    _, _, headers = await node.call("GET", f"/v1/admin/numbers/{number['id']}", key=acme_key)
    status, _, _ = await node.call(
        "PATCH",
        f"/v1/admin/numbers/{number['id']}",
        {"org_id": GLOBEX},
        key=acme_key,
        **{"If-Match": headers["ETag"]},
    )
    assert status == 404


async def upload(node: Admin, carrier: str, deck: str, key: str | None = None, **q: str) -> Any:
    resp = await node.client.put(
        f"/v1/admin/carriers/{carrier}/rates",
        data=deck.encode(),
        params=q,
        headers={"Authorization": f"Bearer {key or node.secret}", "Content-Type": "text/csv"},
    )
    return resp.status, await resp.json()


async def test_a_deck_upload_is_all_or_nothing_audited_and_reaches_decisions(
    node: Admin, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    """A bad line half-way refuses the whole deck, naming the line, and leaves no row and
    no audit entry; a good one replaces the carrier's deck, is audited once, and the
    next LCR answer carries its rate."""
    alpha = demo_id("org:alpha")
    rows = await pool.fetchval("SELECT count(*) FROM lcr_rates WHERE carrier_id = $1", alpha)
    audits = await pool.fetchval("SELECT count(*) FROM audit_logs")
    bad = "prefix,rate,effective_date\n1,0.011,2025-01-01\n44,cheap,2025-01-01\n"
    status, body = await upload(node, alpha, bad, replace="true")
    assert status == 400 and "line 3" in body["error"]["message"], body
    assert body["error"]["field"] == "rate"
    assert (
        await pool.fetchval("SELECT count(*) FROM lcr_rates WHERE carrier_id = $1", alpha) == rows
    )
    assert await pool.fetchval("SELECT count(*) FROM audit_logs") == audits
    good = "prefix,rate,effective_date\n1,0.0011,2025-01-01\n44,0.002,2025-01-01\n"
    status, body = await upload(node, alpha, good, replace="true")
    assert status == 200 and body["rows"] == 2 and body["replace"] is True, body
    entry = await pool.fetchrow(
        "SELECT action, resource_id FROM audit_logs ORDER BY created_at DESC LIMIT 1"
    )
    assert (entry["action"], entry["resource_id"]) == ("rates.import", alpha)
    follower = Follower(warmer(settings, cache, pool), ChangeLog(pool))
    assert await follower.step() >= 1
    await node.client.server.app[SERVICE].catalog.refresh()
    edge = {"Authorization": f"Bearer {EDGE_SECRET}"}
    offers = await (
        await node.client.get("/v1/lcr", params={"number": "12125551234"}, headers=edge)
    ).json()
    assert "0.0011" in json.dumps(offers), offers


async def test_a_deck_upload_is_refused_before_anything_is_written(
    node: Admin, admin_settings: Settings, pool: asyncpg.Pool
) -> None:
    """Another org's carrier: 404; not CSV: 415; a bad flag: 400; over the size cap: 413."""
    alpha = demo_id("org:alpha")
    _, acme_key = await make_key(pool, org=ACME)
    deck = "prefix,rate,effective_date\n1,0.01,2025-01-01\n"
    assert (await upload(node, alpha, deck, key=acme_key))[0] == 404
    status, body = await upload(node, alpha, deck, replace="yes")
    assert status == 400 and body["error"]["field"] == "replace"
    resp = await node.client.put(
        f"/v1/admin/carriers/{alpha}/rates",
        json={"rows": []},
        headers={"Authorization": f"Bearer {node.secret}"},
    )
    assert resp.status == 415
    small = TestClient(TestServer(create_app(replace(admin_settings, max_deck_bytes=1024))))
    await small.start_server()
    try:
        status, body = await upload(
            Admin(small, node.secret), alpha, deck + "1,0.01,2025-01-01\n" * 100
        )
        assert status == 413, body
    finally:
        await small.close()


async def test_users_keep_only_a_scrypt_hash_and_stay_in_their_org(
    node: Admin, pool: asyncpg.Pool
) -> None:
    """A user's password is stored as scrypt and never returned; a taken email is 409;
    another org's key cannot read the user, and no user moves to another org."""
    from sipdata.admin import users

    body = {"org_id": ACME, "email": "Ops@Acme.example", "username": "ops", "password": PASSWORD}
    status, user, _ = await node.call("POST", "/v1/admin/users", body)
    assert status == 201 and user["email"] == "ops@acme.example", user
    assert "password" not in json.dumps(user) and "mfa_secret" not in user
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert users.password_matches(PASSWORD, stored) and PASSWORD not in stored
    status, _, _ = await node.call("POST", "/v1/admin/users", {**body, "username": "ops2"})
    assert status == 409
    _, globex_key = await make_key(pool, org=GLOBEX)
    status, _, _ = await node.call("GET", f"/v1/admin/users/{user['id']}", key=globex_key)
    assert status == 404
    _, acme_key = await make_key(pool, org=ACME)
    _, _, headers = await node.call("GET", f"/v1/admin/users/{user['id']}", key=acme_key)
    status, _, _ = await node.call(
        "PATCH",
        f"/v1/admin/users/{user['id']}",
        {"org_id": GLOBEX},
        key=acme_key,
        **{"If-Match": headers["ETag"]},
    )
    assert status == 400  # a user, like a trunk, never moves to another org
    status, changed, _ = await node.call(
        "PATCH",
        f"/v1/admin/users/{user['id']}",
        {"password": "another-long-password", "role": "admin"},
        key=acme_key,
        **{"If-Match": headers["ETag"]},
    )
    assert status == 200 and changed["role"] == "admin", changed
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert users.password_matches("another-long-password", stored)


async def test_an_org_suspended_through_the_api_refuses_its_next_call(
    node: Admin, settings: Settings, cache: Cache, pool: asyncpg.Pool
) -> None:
    follower = Follower(warmer(settings, cache, pool), ChangeLog(pool))
    _, _, headers = await node.call("GET", f"/v1/admin/organizations/{ACME}")
    status, org, _ = await node.call(
        "PATCH",
        f"/v1/admin/organizations/{ACME}",
        {"status": "suspended"},
        **{"If-Match": headers["ETag"]},
    )
    assert status == 200 and org["status"] == "suspended"
    assert await follower.step() >= 1
    await node.client.server.app[SERVICE].catalog.refresh()
    resp = await node.client.get(
        "/v1/decide/invite",
        params={"source_ip": "127.0.0.10", "to": "12125551234", "call_id": "s", "dry_run": "1"},
        headers={"Authorization": f"Bearer {EDGE_SECRET}"},
    )
    assert (await resp.json())["code"] == 403


async def test_upload_rates_sends_a_deck_with_its_progress_and_names_a_bad_line(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """`sipdata upload-rates` streams the file to a running `sipdata serve`, shows how
    much went, prints the import's result; a bad line is named and the exit code is 1."""
    _, secret = await make_key(pool, scopes=("rates:write",))
    key_file = tmp_path / "key"
    key_file.write_text(secret + "\n")
    port = free_port()
    proc = start_serve(settings, port, tmp_path / "serve.log")
    try:
        for _ in range(200):
            if listening(port):
                break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            await asyncio.sleep(0.1)
        deck = tmp_path / "deck.csv"
        deck.write_text(
            "prefix,rate,effective_date\n"
            + "".join(f"{4900 + i},0.01,2025-01-01\n" for i in range(50))
        )
        args = [
            "upload-rates",
            str(deck),
            "--carrier",
            demo_id("org:alpha"),
            "--key-file",
            str(key_file),
            "--url",
            f"http://127.0.0.1:{port}",
        ]
        done = await asyncio.to_thread(run, settings, *args)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rows"] == 50 and "uploaded" in done.stderr
        deck.write_text("prefix,rate,effective_date\n1,0.01,2025-01-01\n44,cheap,2025-01-01\n")
        bad = await asyncio.to_thread(run, settings, *args)
        assert bad.returncode == 1 and "line 3" in bad.stderr and "(rate)" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        proc.terminate()
        proc.wait(20)


async def test_two_orgs_claiming_overlapping_networks_at_once_get_one_each_way(
    node: Admin,
) -> None:
    """The overlap check and the insert are one serializable transaction: when two
    orgs add overlapping networks at the same moment, one is made and the other is
    refused, every time (never both, as a check-then-insert would let through)."""
    acme = await new_trunk(node, auth_type="ip", password=None, username="acme-race")
    globex = demo_id("trunk:globex-ip")
    for i in range(12):
        wide, narrow = f"203.0.113.{16 * i}/28", f"203.0.113.{16 * i + 8}/29"
        answers = await asyncio.gather(
            node.call("POST", f"/v1/admin/trunks/{acme['id']}/acl", {"ip": wide}),
            node.call("POST", f"/v1/admin/trunks/{globex}/acl", {"ip": narrow}),
        )
        assert sorted(a[0] for a in answers) == [201, 409], answers
