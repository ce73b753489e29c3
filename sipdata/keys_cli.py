"""`sipdata api-key create|list|revoke`: the first admin key, and keys without the API."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import orjson

from sipdata.admin import validate
from sipdata.cache.apikeys import ApiKeyCache
from sipdata.cache.client import Cache
from sipdata.db import admin as db
from sipdata.db.pool import create_pool
from sipdata.errors import InputError
from sipdata.serving.admin import AdminService
from sipdata.settings import Settings

# The command line is its own actor in the audit trail: no key made the change.
CLI = db.Actor(key_id=None, org_id=None, ip=None, user_agent="sipdata api-key")


def add_parser(sub: Any) -> None:
    k = sub.add_parser("api-key", help="create, list or revoke admin API keys")
    ksub = k.add_subparsers(dest="action", required=True)
    c = ksub.add_parser("create", help="make a key; its secret is printed once")
    c.add_argument("--name", required=True)
    c.add_argument("--org", help="bind the key to this org id (default: a platform key)")
    c.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        help="resource:read|write|* or * (repeat; default *)",
    )
    c.add_argument("--rate-limit", type=int, default=1000, help="requests per minute")
    c.add_argument("--expires", help="ISO 8601 time with its offset, e.g. 2027-01-01T00:00:00Z")
    ls = ksub.add_parser("list", help="print keys as JSON (never their secrets)")
    ls.add_argument("--org", help="only this org's keys")
    r = ksub.add_parser("revoke", help="revoke a key by id (every node stops it within 1 s)")
    r.add_argument("id")


def _print(doc: Any) -> None:
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode())


async def cmd_api_key(settings: Settings, args: argparse.Namespace) -> int:
    pool = await create_pool(settings)
    cache = Cache.from_settings(settings)
    service = AdminService(db.AdminStore(pool), ApiKeyCache(cache), settings.realm)
    try:
        if args.action == "create":
            body: dict[str, Any] = {
                "name": args.name,
                "scopes": args.scopes or ["*"],
                "rate_limit": args.rate_limit,
            }
            if args.org:
                body["org_id"] = args.org
            if args.expires:
                body["expires_at"] = args.expires
            given = validate.api_key(body, dt.datetime.now(dt.UTC))
            row, secret = await service.create_key(CLI, given, given.org_id)
            _print({**row, "secret": secret})
            return 0
        if args.action == "list":
            org = validate.check_uuid(args.org, "org") if args.org else None
            items: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                page = await service.list("api_keys", org, {}, cursor, 500)
                items += page.items
                if page.cursor is None:
                    break
                cursor = page.cursor
            _print(items)
            return 0
        _print(await service.revoke_key(CLI, validate.check_uuid(args.id, "id")))
        return 0
    except InputError as exc:
        raise InputError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from exc
    finally:
        await pool.close()
        await cache.close()
