"""Gateway breakers, carrier quality and margin on real Redis and PostgreSQL: reports from
Kamailio change the next decision of every node, and the answers say why."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sipdata.cache import keys
from sipdata.cache.client import Cache
from sipdata.cache.health import RoutingHealth
from sipdata.cache.live import Entry
from sipdata.db.provision import demo_id
from sipdata.decide import breaker
from sipdata.decide.breaker import Breaker, BreakerConfig
from sipdata.decide.quality import QualityConfig
from sipdata.jobs.outcomes import Outcomes
from sipdata.settings import Settings

from .conftest import Api, start_api, warmer

pytestmark = pytest.mark.usefixtures("warm")
CALL = {"source_ip": "127.0.0.10", "to": "12125551234", "dry_run": "1"}
BRAVO, CHARLIE, ALPHA = (demo_id(f"org:{c}") for c in ("bravo", "charlie", "alpha"))
BRAVO_GW = "127.0.0.102"


def carriers(answer: dict[str, Any]) -> list[str]:
    return [leg["carrier_id"] for leg in answer.get("legs", [])]


async def acme_features(
    api: Api, pool: asyncpg.Pool, settings: Settings, cache: Cache, features: dict[str, str]
) -> None:
    """acme's organization_settings.features, loaded as the warmer would."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE organization_settings SET features = $2::jsonb WHERE org_id = $1::uuid",
            demo_id("org:acme"),
            features,
        )
    await warmer(settings, cache, pool).load_once()
    await api.refresh()


async def attempt(api: Api, call_id: str, gateway: str, code: int) -> None:
    doc = {
        "event": "attempt",
        "call_id": call_id,
        "ts": time.time(),
        "gateway": f"sip:12125551234@{gateway}",
        "sip_code": code,
        "report_key": f"{call_id}:attempt:{gateway}",
    }
    status, body = await api.post("/v1/events/calls", {"reports": [doc]})
    assert status == 202 and body["done"] == [doc["report_key"]], body


async def test_a_gateway_failing_five_times_is_left_out_by_every_node_at_once(
    api: Api, settings: Settings
) -> None:
    """Five 503s in a row open bravo's breaker: this node's and another node's next
    decisions leave bravo out, and explain names the gateway and its state."""
    assert carriers(await api.decide(**CALL))[0] == BRAVO
    for i in range(4):
        await attempt(api, f"c{i}", BRAVO_GW, 503)
    assert carriers(await api.decide(**CALL))[0] == BRAVO  # four is not enough
    await attempt(api, "c4", BRAVO_GW, 408)
    other = await start_api(settings)
    try:
        for node in (api, other):
            await node.refresh()
            answer = await node.decide(**CALL)
            assert BRAVO not in carriers(answer)
            assert carriers(answer) == [CHARLIE, ALPHA]
            (lcr,) = answer["explain"]["lcr"]
            assert lcr["gateways_down"] == [{"carrier_id": BRAVO, "gateway": BRAVO_GW}]
            bravo = next(o for o in lcr["offers"] if o["carrier_id"] == BRAVO)
            assert bravo["gateways"] == [{"address": BRAVO_GW, "state": "open"}]
    finally:
        await other.client.close()
    status, lcr_body = await api.get("/v1/lcr", number="12125551234")
    assert status == 200
    states = {o["carrier_id"]: o["gateway_states"] for o in lcr_body["offers"]}
    assert states[BRAVO][0]["state"] == "open"
    status, gws = await api.get("/v1/gateways")
    assert status == 200
    assert {"gateway": f"{BRAVO_GW}:5060", "state": "open"}.items() <= next(
        g for g in gws["gateways"] if g["carrier_id"] == BRAVO
    ).items()
    assert f"sip:{BRAVO_GW}" in gws["uris"].split(",")


async def test_a_gateway_that_answers_its_probe_again_is_offered_and_closes_on_success(
    api: Api,
) -> None:
    """probe down opens at once; probe up makes it half-open (offered again, in its
    place); the next answered call closes it, a failure would open it again."""
    status, body = await api.post(
        "/v1/events/gateway", {"gateway": f"sip:{BRAVO_GW}:5060", "state": "down"}
    )
    assert (status, body["state"]) == (200, "open")
    assert BRAVO not in carriers(await api.decide(**CALL))
    status, body = await api.post(
        "/v1/events/gateway", {"gateway": f"sip:{BRAVO_GW}", "state": "up"}
    )
    assert (status, body["state"]) == (200, "half_open")
    answer = await api.decide(**CALL)
    assert carriers(answer)[0] == BRAVO
    await attempt(api, "half-1", BRAVO_GW, 500)  # the trial failed: open again
    assert BRAVO not in carriers(await api.decide(**CALL))
    await api.post("/v1/events/gateway", {"gateway": f"sip:{BRAVO_GW}", "state": "up"})
    await attempt(api, "half-2", BRAVO_GW, 486)  # busy callee: the gateway works
    assert "127.0.0.102:5060" not in (await api.service.routing_health.breakers())


async def test_every_gateway_down_still_routes_as_a_last_resort(api: Api) -> None:
    """All three carriers' gateways judged down: the call is offered all of them in cost
    order rather than refused on the strength of breakers that may be wrong."""
    for gw in ("127.0.0.101", "127.0.0.102", "127.0.0.103"):
        await api.post("/v1/events/gateway", {"gateway": f"sip:{gw}", "state": "down"})
    answer = await api.decide(**CALL)
    assert answer["verdict"] == "route"
    assert carriers(answer) == [BRAVO, CHARLIE, ALPHA]
    assert answer["explain"]["lcr"][0]["last_resort"] is True


async def test_bad_gateway_reports_are_refused_with_the_field_and_change_nothing(
    api: Api, cache: Cache
) -> None:
    for body, field in [
        ({"gateway": "127.0.0.102", "state": "down"}, "gateway"),
        ({"gateway": "sip:127.0.0.102", "state": "sideways"}, "state"),
        ({"gateway": "sip:127.0.0.102"}, "state"),
        ({"state": "down"}, "gateway"),
    ]:
        status, answer = await api.post("/v1/events/gateway", body)
        assert status == 400 and answer["error"]["field"] == field, answer
    # no carrier routes there: a made-up name cannot grow the breaker hash
    await api.refresh()  # (before the first generation is read, every name is taken)
    status, answer = await api.post(
        "/v1/events/gateway", {"gateway": "sip:198.51.100.7", "state": "down"}
    )
    assert status == 404 and answer["error"]["field"] == "gateway", answer
    for i in range(6):  # branches to a PBX (a DID's trunk) are no carrier's
        await attempt(api, f"pbx{i}", "127.0.0.20:5080", 503)
    assert await cache.client.hlen(keys.GATEWAY_BREAKERS) == 0


async def test_an_open_breaker_lets_calls_try_again_after_its_open_time(
    cache: Cache,
) -> None:
    health = RoutingHealth(cache, BreakerConfig(2, 1000), QualityConfig())
    t0 = 1_000_000
    assert await health.gateway_events([("sip:10.0.0.1", "fail")] * 2, now_ms=t0) == [
        "closed",
        "open",
    ]
    stored = (await health.breakers())["10.0.0.1:5060"]
    assert stored.effective(t0 + 999, health.breaker_config) == "open"
    assert stored.effective(t0 + 1000, health.breaker_config) == "half_open"


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    events=st.lists(st.tuples(st.sampled_from(breaker.EVENTS), st.integers(0, 3000)), max_size=25),
    threshold=st.integers(1, 4),
)
async def test_the_lua_breaker_steps_exactly_as_the_python_definition(
    cache: Cache, events: list[tuple[str, int]], threshold: int
) -> None:
    """gateway_event.lua and decide/breaker.step agree on every sequence of events."""
    config = BreakerConfig(threshold, 1000)
    health = RoutingHealth(cache, config, QualityConfig())
    await cache.client.delete(keys.GATEWAY_BREAKERS)
    model, now = Breaker(), 10_000
    for event, gap in events:
        now += gap
        model = breaker.step(model, event, now, config)
        (state,) = await health.gateway_events([("sip:10.9.9.9:5070", event)], now_ms=now)
        assert state == model.effective(now, config)
        raw = await cache.client.hget(keys.GATEWAY_BREAKERS, "10.9.9.9:5070")
        assert breaker.unpack(raw) == model


async def test_quality_from_reports_reaches_lcr_metrics_and_a_quality_floor_org(
    api: Api, pool: asyncpg.Pool, settings: Settings, cache: Cache
) -> None:
    """Twenty failed attempts at bravo (486: its callees are busy, the gateway is fine,
    so no breaker opens) put its ASR at 0: /v1/lcr and /metrics show it, a cost org
    still tries bravo first, a quality_floor org tries it last and says why."""
    lease = {"legs": [{"uri": "sip:12125551234@127.0.0.102", "carrier_id": BRAVO, "prefix": "1"}]}
    now = dt.datetime.now(dt.UTC).isoformat()  # this minute, so the window holds them
    entries: list[Entry] = []
    for i in range(20):
        event = {
            "event": "attempt",
            "call_id": f"q{i}",
            "ts": now,
            "gateway": "sip:12125551234@127.0.0.102",
            "sip_code": 486,
        }
        entries.append((f"{i}-0", {b"event": orjson.dumps(event), b"lease": orjson.dumps(lease)}))
    await Outcomes(api.service.routing_health, api.service.metrics).observe(entries, [])
    _, body = await api.get("/v1/lcr", number="12125551234")
    bravo = next(o for o in body["offers"] if o["carrier_id"] == BRAVO)
    assert bravo["quality"]["carrier"]["attempts"] == 20
    assert bravo["quality"]["carrier"]["asr"] == 0.0
    assert bravo["quality"]["prefix"]["attempts"] == 20
    metrics = await (await api.client.get("/metrics")).text()
    assert (
        f'sipdata_carrier_quality{{carrier_id="{BRAVO}",measure="asr",prefix="*"}} 0.0' in metrics
    )
    assert carriers(await api.decide(**CALL))[0] == BRAVO  # acme routes by cost
    await acme_features(api, pool, settings, cache, {"routing_strategy": "quality_floor"})
    answer = await api.decide(**CALL)
    assert carriers(answer) == [CHARLIE, ALPHA, BRAVO]
    (lcr,) = answer["explain"]["lcr"]
    assert lcr["strategy"] == "quality_floor"
    assert lcr["offers"][-1]["order"] == "under the quality floor: demoted"
    assert lcr["offers"][-1]["quality"]["asr"] == 0.0


async def test_a_sell_rate_keeps_carriers_that_cost_more_out_and_says_so(
    api: Api, pool: asyncpg.Pool, settings: Settings, cache: Cache
) -> None:
    await acme_features(api, pool, settings, cache, {"sell_rate": "0.0095"})
    answer = await api.decide(**CALL)
    assert carriers(answer) == [BRAVO, CHARLIE]  # alpha's 0.0100 is above 0.0095
    (lcr,) = answer["explain"]["lcr"]
    assert lcr["margin"] == {
        "sell_rate": "0.0095",
        "not_offered": [
            {"carrier_id": ALPHA, "rate": "0.010000", "reason": "rate above the sell rate"}
        ],
    }
