"""The sipdata command line: serve, warm, migrate, partitions, import-rates, demo-data, ..."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import structlog

from sipdata.cache.client import Cache
from sipdata.cache.live import Entry, LiveState
from sipdata.db import decks, provision
from sipdata.db import migrate as migrate_mod
from sipdata.db.changes import ChangeLog, Wakeup
from sipdata.db.pool import create_pool
from sipdata.db.reads import Store
from sipdata.decide import digest
from sipdata.errors import ConfigError, ImportFileError, SipdataError, WarmFailed
from sipdata.http.upload import add_parser as add_upload_parser
from sipdata.http.upload import cmd_upload_rates
from sipdata.jobs.follow import Follower
from sipdata.jobs.warmer import Warmer
from sipdata.keys_cli import add_parser as add_api_key_parser
from sipdata.keys_cli import cmd_api_key
from sipdata.logs import configure
from sipdata.metrics import Metrics
from sipdata.serving.admin import deck_rows
from sipdata.settings import Settings

log = structlog.get_logger(__name__)


def _print(doc: Any) -> None:
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode())


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def _with_pool(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    pool = await create_pool(settings)
    try:
        return await work(pool)
    finally:
        await pool.close()


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    url = urlsplit(settings.database_url)
    name = url.path.lstrip("/") or "postgres"
    created = await migrate_mod.ensure_database(urlunsplit(url._replace(path="/postgres")), name)

    async def work(pool: Any) -> migrate_mod.MigrateResult:
        async with pool.acquire() as conn:
            return await migrate_mod.migrate(conn, _today(), args.months_ahead)

    result = await _with_pool(settings, work)
    _print(
        {
            "database_created": created,
            "schema_applied": result.applied,
            "version": result.version,
            "partitions_created": result.partitions_created,
        }
    )
    return 0


async def cmd_partitions(settings: Settings, args: argparse.Namespace) -> int:
    async def work(pool: Any) -> list[str]:
        async with pool.acquire() as conn:
            return await migrate_mod.ensure_partitions(conn, _today(), args.months_ahead)

    _print({"partitions_created": await _with_pool(settings, work)})
    return 0


async def cmd_warm(settings: Settings, args: argparse.Namespace) -> int:
    redis = Cache.from_settings(settings)
    try:

        async def work(pool: Any) -> Any:
            warmer = Warmer(settings, redis, Store(pool), Metrics(), owner=args.holding_lock)
            if args.holding_lock is None:
                return await warmer.load_once()
            if not await redis.holds_lock(args.holding_lock):
                raise WarmFailed("--holding-lock: the warmer lock is not held by that owner")
            return await warmer.load_locked()

        if not args.loop:
            beat = await _with_pool(settings, work)
            _print(beat or {"skipped": "another warmer holds the lock"})
            return 0

        async def forever(pool: Any) -> None:
            warmer = Warmer(settings, redis, Store(pool), Metrics())
            await Follower(warmer, ChangeLog(pool), Wakeup(settings.database_url)).run()

        await _with_pool(settings, forever)
        return 0
    finally:
        await redis.close()


async def cmd_import_rates(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        fh = await asyncio.to_thread(path.open, newline="", encoding="utf-8")
    except OSError as exc:
        print(f"sipdata import-rates: {path}: {exc.strerror}", file=sys.stderr)
        return 1

    async def work(pool: Any) -> decks.ImportResult:
        # Parsed while written: a bad line rolls the whole import back, naming the line.
        return await decks.import_rates(pool, args.carrier, deck_rows(fh), replace=args.replace)

    with fh:
        result = await _with_pool(settings, work)
    out: dict[str, Any] = {
        "carrier_id": result.carrier_id,
        "rows": result.rows,
        "removed": result.removed,
    }
    if args.warm:
        redis = Cache.from_settings(settings)
        try:

            async def warm(pool: Any) -> Any:
                # The import queued one deck change; apply it (and anything else
                # pending) now. A follower of a running serve may have taken it first.
                warmer = Warmer(settings, redis, Store(pool), Metrics())
                applied = await Follower(warmer, ChangeLog(pool)).step()
                return {"changes_applied": applied, "heartbeat": await redis.heartbeat()}

            out["warm"] = await _with_pool(settings, warm)
        finally:
            await redis.close()
    _print(out)
    return 0


async def cmd_demo_data(settings: Settings, args: argparse.Namespace) -> int:
    async def work(pool: Any) -> dict[str, int]:
        return await provision.load_demo(pool, settings.realm, _today())

    _print({"loaded": await _with_pool(settings, work)})
    return 0


def _dead_doc(entry: Entry) -> dict[str, Any]:
    """A dead letter as an operator reads it: its JSON fields decoded."""
    entry_id, fields = entry
    doc: dict[str, Any] = {"id": entry_id}
    for name, raw in fields.items():
        key = name.decode(errors="replace")
        try:
            doc[key] = orjson.loads(raw) if key in ("event", "lease", "report") else raw.decode()
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            doc[key] = raw.decode(errors="replace")
    if "at" in doc and doc["at"].isdigit():
        doc["at"] = dt.datetime.fromtimestamp(int(doc["at"]) / 1000, dt.UTC).isoformat()
    return doc


def _entry_id(text: str) -> str:
    """A stream entry id as `list` prints it (`<ms>-<seq>`), for argparse."""
    if not re.fullmatch(r"\d{1,20}-\d{1,20}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an entry id like 1764547200000-0")
    return text


def _start(text: str) -> str:
    """Where `list` starts: "-" (the oldest), an id, or "(ID" (just after it)."""
    return text if text == "-" else "(" + _entry_id(text.removeprefix("("))


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


async def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    redis = Cache.from_settings(settings)
    live = LiveState.from_settings(redis, settings)
    try:
        if args.action == "list":
            _print([_dead_doc(e) for e in await live.dead_letters(args.limit, args.after)])
            return 0
        if not args.all:
            moved = await live.replay_dead(args.ids)
            _print({"replayed": moved, "not_found": len(args.ids) - moved})
            return 0 if moved == len(args.ids) else 1
        moved, after = 0, "-"
        while batch := await live.dead_letters(500, after):
            moved += await live.replay_dead([i for i, _ in batch])
            after = "(" + batch[-1][0]  # past the last one (left there if it could not move)
        _print({"replayed": moved})
        return 0
    finally:
        await redis.close()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvloop

    settings.check_exposure()
    workers = args.workers or settings.serve_workers()
    try:
        return uvloop.run(_serve(settings, workers, reuse_port=args.reuse_port or workers > 1))
    except OSError as exc:  # the port is taken, the address is not this host's, ...
        where = f"{settings.http_host}:{settings.http_port}"
        print(f"sipdata serve: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _serve(settings: Settings, workers: int, *, reuse_port: bool) -> int:
    """This process serves and runs the background jobs; workers - 1 children only serve,
    on the same port. A child that exits stops them all (exit 1): a supervisor restarts
    the set, rather than the host running short of workers unnoticed."""
    from sipdata.app import create_app
    from sipdata.http.server import serve

    stop = asyncio.Event()
    env = {
        **settings.child_env(),
        "SIPDATA_WORKERS": "1",
        "SIPDATA_WARMER_ENABLED": "false",
        "SIPDATA_WRITEBACK_ENABLED": "false",
    }
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sipdata", "serve", "--reuse-port", env=env
        )
        for _ in range(workers - 1)
    ]
    lost: list[int] = []

    async def watch(child: asyncio.subprocess.Process) -> None:
        code = await child.wait()
        if not stop.is_set():
            log.error("serve worker exited", pid=child.pid, code=code)
            lost.append(child.pid)
            stop.set()

    watchers = [asyncio.create_task(watch(c)) for c in children]
    try:
        await serve(
            create_app(settings),
            settings.http_host,
            settings.http_port,
            keepalive_timeout=settings.keepalive_timeout_s,
            access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
            reuse_port=reuse_port,
            stop=stop,
        )
    finally:
        stop.set()
        for child in children:
            if child.returncode is None:
                child.terminate()
        await asyncio.gather(*watchers, return_exceptions=True)
    return 1 if lost else 0


def cmd_hash_password(settings: Settings, args: argparse.Namespace) -> int:
    password = args.password if args.password is not None else getpass.getpass("password: ")
    print(digest.encode(args.username, args.realm or settings.realm, password))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sipdata", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the HTTP service (with the warmer unless disabled)")
    s.add_argument("--reuse-port", action="store_true", help="share the port (SO_REUSEPORT)")
    s.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes sharing the port (default SIPDATA_WORKERS; 0 there: half the cores)",
    )
    w = sub.add_parser("warm", help="one full load database -> Redis")
    w.add_argument("--loop", action="store_true", help="then follow database changes until stopped")
    # serve's follower runs its full loads as `warm --holding-lock OWNER` (jobs/warmer.py).
    w.add_argument("--holding-lock", metavar="OWNER", help=argparse.SUPPRESS)
    for name in ("migrate", "partitions"):
        m = sub.add_parser(
            name,
            help="apply schema.sql + partitions"
            if name == "migrate"
            else "create monthly partitions ahead of time",
        )
        m.add_argument("--months-ahead", type=int, default=3)
    i = sub.add_parser("import-rates", help="import a carrier rate deck (CSV)")
    i.add_argument("file")
    i.add_argument("--carrier", required=True, help="carrier organization id or exact name")
    i.add_argument(
        "--replace", action="store_true", help="also delete the carrier's rows not in the file"
    )
    i.add_argument(
        "--no-warm",
        dest="warm",
        action="store_false",
        help="leave the deck to a running follower instead of applying it to Redis now",
    )
    d = sub.add_parser(
        "dead-letters",
        help="list the reports the drainer could not write, or replay them after a fix",
    )
    dsub = d.add_subparsers(dest="action", required=True)
    dl = dsub.add_parser("list", help="print dead letters as JSON, oldest first")
    dl.add_argument("--limit", type=_positive, default=100)
    dl.add_argument("--after", type=_start, default="-", help="start just after this entry id")
    dr = dsub.add_parser("replay", help="send dead letters back to the drainer")
    which = dr.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=_entry_id, default=[], help="ids from `list`")
    which.add_argument("--all", action="store_true", help="every dead letter")
    sub.add_parser("demo-data", help="load the demo data set")
    h = sub.add_parser("hash-password", help="print a sip_trunks.password_hash value")
    h.add_argument("username")
    h.add_argument("--realm")
    h.add_argument("--password", help="(default: prompt)")
    add_api_key_parser(sub)
    add_upload_parser(sub)
    return p


ASYNC_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "migrate": cmd_migrate,
    "partitions": cmd_partitions,
    "warm": cmd_warm,
    "import-rates": cmd_import_rates,
    "demo-data": cmd_demo_data,
    "dead-letters": cmd_dead_letters,
    "api-key": cmd_api_key,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"sipdata: configuration error: {exc.message}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            return cmd_serve(settings, args)
        if args.command == "hash-password":
            return cmd_hash_password(settings, args)
        if args.command == "upload-rates":
            return cmd_upload_rates(args)
        return asyncio.run(ASYNC_COMMANDS[args.command](settings, args))
    except ImportFileError as exc:
        where = f" field {exc.field}:" if exc.field else ""
        print(
            f"sipdata {args.command}: {args.file}: line {exc.line}:{where} "
            f"{exc.message.split(': ', 1)[-1]}",
            file=sys.stderr,
        )
        return 1
    except ConfigError as exc:
        print(f"sipdata {args.command}: configuration error: {exc.message}", file=sys.stderr)
        return 2
    except SipdataError as exc:
        print(f"sipdata {args.command}: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
