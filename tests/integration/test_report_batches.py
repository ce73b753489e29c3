"""Call reports in batches (POST /v1/events/calls) on real Redis and PostgreSQL: one Redis
step for the batch, each report stored or refused on its own, and the keys Kamailio may
drop echoed back."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.settings import Settings

from .calls import ACME_IP, call_report, cdrs, drain
from .conftest import Api, free_port, start_api

pytestmark = pytest.mark.usefixtures("warm")


def keyed(call_id: str, event: str, t0: float, **extra: Any) -> dict[str, Any]:
    return {**call_report(call_id, event, t0, **extra), "report_key": f"{call_id}:{event}"}


async def test_a_routed_call_reported_in_one_batch_gets_its_rated_cdr(
    api: Api, cache: Cache, pool: asyncpg.Pool
) -> None:
    """start, answer and end in one batch are stored in one step, release the lease and
    become one rated CDR."""
    decided = await api.decide(source_ip="127.0.0.10", to="12125551234", call_id="batched")
    assert decided["verdict"] == "route"
    await api.service.lease_docs.aclose()
    t0 = time.time()
    batch = [
        keyed("batched", "start", t0),
        keyed("batched", "answer", t0, destination_ip="127.0.0.102", answer_ts=t0 + 2),
        keyed("batched", "end", t0, destination_ip="127.0.0.102", answer_ts=t0 + 2),
    ]
    status, body = await api.post("/v1/events/calls", {"reports": batch})
    assert status == 202, body
    assert body["stored"] == 3 and body["refused"] == [] and body["kept"] == []
    assert body["done"] == ["batched:start", "batched:answer", "batched:end"]
    assert await cache.client.exists(keys.lease("batched")) == 0  # the end released it
    await drain(api)
    (cdr,) = await cdrs(pool, "batched")
    assert cdr["trunk_id"] is not None and str(cdr["trunk_id"]) == ACME_IP
    assert cdr["rate"] is not None and cdr["billable_duration"] > 0


async def test_a_malformed_report_is_refused_alone_and_still_dropped(
    api: Api, cache: Cache
) -> None:
    """A malformed report is refused by index and field while the rest of its batch is
    stored; its key is in `done` so Kamailio drops it."""
    t0 = time.time()
    bad = {"event": "end", "call_id": "b-2", "report_key": "b-2:end"}  # no ts
    status, body = await api.post(
        "/v1/events/calls", {"reports": [keyed("b-1", "start", t0), bad, "not a report"]}
    )
    assert status == 202
    assert body["stored"] == 1
    assert [(r["index"], r["field"]) for r in body["refused"]] == [(1, "ts"), (2, "reports[2]")]
    # Refused reports can never be stored: Kamailio drops them as it drops stored ones.
    assert body["done"] == ["b-1:start", "b-2:end"]
    assert await cache.client.xlen(keys.CALL_EVENTS) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reports"),
        ({"reports": []}, "reports"),
        ({"reports": {"event": "end"}}, "reports"),
        ({"reports": [{}] * 501}, "reports"),
    ],
)
async def test_a_body_that_is_not_a_batch_is_400_and_stores_nothing(
    api: Api, cache: Cache, body: dict[str, Any], field: str
) -> None:
    """A body that is not a batch is a 400 naming the field and stores nothing."""
    status, answer = await api.post("/v1/events/calls", body)
    assert status == 400 and answer["error"]["field"] == field
    assert await cache.client.xlen(keys.CALL_EVENTS) == 0


async def test_with_redis_away_ends_become_cdrs_and_starts_are_kept(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """An end is durable as a CDR; a start has nowhere to go and is sent again later."""
    away = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    api = await start_api(away)
    t0 = time.time()
    try:
        status, body = await api.post(
            "/v1/events/calls",
            {"reports": [keyed("r-1", "start", t0), keyed("r-1", "end", t0)]},
        )
    finally:
        await api.client.close()
    assert status == 202, body
    assert body["done"] == ["r-1:end"] and body["kept"] == ["r-1:start"]
    (cdr,) = await cdrs(pool, "r-1")
    assert cdr["rate"] is None  # no lease to rate it from


async def test_with_redis_and_the_database_away_the_batch_is_503(settings: Settings) -> None:
    """With Redis and the database away a batch is 503 and nothing is acknowledged."""
    down = replace(
        settings,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
    )
    api = await start_api(down)
    try:
        status, body = await api.post(
            "/v1/events/calls", {"reports": [keyed("d-1", "end", time.time())]}
        )
    finally:
        await api.client.close()
    assert status == 503 and body["degraded"] is True


async def test_a_single_report_is_a_batch_of_one_also_with_redis_away(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """/v1/events/call: an end is written as a CDR; a start, which has nowhere to go,
    is 503 so Kamailio keeps it (never a 4xx, which would make it drop the report)."""
    away = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    api = await start_api(away)
    t0 = time.time()
    try:
        start_status, start = await api.post("/v1/events/call", keyed("s-1", "start", t0))
        end_status, end = await api.post("/v1/events/call", keyed("s-1", "end", t0))
    finally:
        await api.client.close()
    assert start_status == 503 and start["error"]["code"] == "redis_unavailable"
    assert end_status == 202 and end == {"stored": "database", "call_id": "s-1"}
    assert len(await cdrs(pool, "s-1")) == 1


@pytest.mark.parametrize("bad_key", [7, None, "", ["k"]], ids=["int", "null", "empty", "list"])
async def test_a_report_kamailio_could_not_match_by_key_is_refused_not_stored(
    api: Api, cache: Cache, bad_key: Any
) -> None:
    """A report stored without a usable key would be listed in neither `done` nor `kept`
    and Kamailio would send it forever: it is refused (index and field named) and not
    stored; its neighbours in the batch are unaffected."""
    t0 = time.time()
    odd = {**call_report("odd", "end", t0), "report_key": bad_key}
    status, body = await api.post("/v1/events/calls", {"reports": [keyed("fine", "end", t0), odd]})
    assert status == 202, body
    assert body["done"] == ["fine:end"] and body["kept"] == [] and body["stored"] == 1
    (refused,) = body["refused"]
    assert refused["index"] == 1 and refused["field"] == "reports[1].report_key"
    assert await cache.client.xlen(keys.CALL_EVENTS) == 1
