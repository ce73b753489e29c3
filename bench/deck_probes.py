"""A full load's Python work without Redis, on the database `make bench`'s import section
leaves behind (sipdata_bench_deck: after a full run ten decks of 1,000,000 prefixes,
after a --quick run one of 100,000). Three passes over the decks, each timed whole:
the cursor alone, then grouped into rate rows, then also compiled and encoded as stored.

    .venv/bin/python -m bench.deck_probes
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import asyncpg
import orjson

from bench.procs import env_for
from sipdata.db.reads import _RATE_SQL, _by_prefix
from sipdata.decide import lcr

DATABASE, REDIS_DB = "sipdata_bench_deck", 9


async def _connect() -> asyncpg.Connection:
    return await asyncpg.connect(env_for(DATABASE, REDIS_DB)["SIPDATA_DATABASE_URL"])


async def compile_probe() -> dict[str, float]:
    """Seconds of each pass (each reads the decks again from PostgreSQL)."""
    conn = await _connect()
    today = dt.datetime.now(dt.UTC).date()
    query = f'{_RATE_SQL} ORDER BY prefix COLLATE "C"'
    out: dict[str, float] = {}
    try:
        for name in ("read", "group", "compile_encode"):
            started = time.perf_counter()
            async with conn.transaction():
                rows = conn.cursor(query, today, prefetch=20000).__aiter__()
                if name == "read":
                    async for _ in rows:
                        pass
                elif name == "group":
                    async for _ in _by_prefix(rows):
                        pass
                else:
                    compiler = lcr.DeckCompiler(today)
                    async for prefix, group in _by_prefix(rows):
                        entry = compiler.push(prefix, group)
                        if entry is not None:
                            orjson.dumps(lcr.stored_entry(prefix, entry))
            out[f"{name}_s"] = round(time.perf_counter() - started, 2)
    finally:
        await conn.close()
    return out


def main() -> None:
    print(orjson.dumps(asyncio.run(compile_probe()), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
