"""`sipdata upload-rates`: a rate deck sent to a running sipdata's admin API, streamed
from disk with its progress on stderr (a million-prefix deck is about 40 MB)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

CHUNK = 1 << 20


def add_parser(sub: Any) -> None:
    u = sub.add_parser(
        "upload-rates", help="send a rate deck (CSV) to a running sipdata's admin API"
    )
    u.add_argument("file")
    u.add_argument("--carrier", required=True, help="the carrier organization's id")
    u.add_argument("--replace", action="store_true", help="the file replaces the whole deck")
    u.add_argument("--url", default="http://127.0.0.1:8480", help="sipdata's base URL")
    u.add_argument("--key-file", required=True, help="a file holding an admin key with rates:write")


async def _chunks(
    path: Path, total: int, report: Callable[[int, int], None]
) -> AsyncIterator[bytes]:
    sent = 0
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            sent += len(chunk)
            report(sent, total)
            yield chunk


def _progress(out: Any) -> Callable[[int, int], None]:
    last = [0.0]

    def report(sent: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and sent < total:
            return
        last[0] = now
        share = 100 * sent // total if total else 100
        print(
            f"\ruploaded {sent / 2**20:.1f} of {total / 2**20:.1f} MiB ({share} %)",
            end="",
            file=out,
        )
        if sent >= total:
            print(" — importing", file=out)

    return report


def cmd_upload_rates(args: argparse.Namespace) -> int:
    path, key_file = Path(args.file), Path(args.key_file)
    try:
        key = key_file.read_text().strip()
        total = path.stat().st_size
    except OSError as exc:
        print(f"sipdata upload-rates: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return asyncio.run(_send(args, path, key, total))


async def _send(args: argparse.Namespace, path: Path, key: str, total: int) -> int:
    url = f"{args.url.rstrip('/')}/v1/admin/carriers/{args.carrier}/rates"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/csv"}
    params = {"replace": "true" if args.replace else "false"}
    # No total timeout: the import of a big deck takes as long as it takes.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.put(
                url,
                data=_chunks(path, total, _progress(sys.stderr)),
                headers={**headers, "Content-Length": str(total)},
                params=params,
            ) as resp,
        ):
            body = await resp.read()
    except aiohttp.ClientError as exc:
        print(f"\nsipdata upload-rates: {url}: {exc}", file=sys.stderr)
        return 1
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = {"error": {"message": body[:200].decode(errors="replace")}}
    if resp.status >= 400:
        error = doc.get("error", {}) if isinstance(doc, dict) else {}
        field = f" ({error['field']})" if error.get("field") else ""
        print(
            f"\nsipdata upload-rates: {resp.status}: {error.get('message')}{field}", file=sys.stderr
        )
        return 1
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    return 0
