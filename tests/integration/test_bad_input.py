"""Malformed requests get 400/413 with one stable JSON error shape and change nothing."""

from __future__ import annotations

import pytest

from .conftest import Api

pytestmark = pytest.mark.usefixtures("warm")


def assert_error(
    status: int, body: dict, expected_status: int, code: str, field: str | None
) -> None:
    assert status == expected_status
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == code and body["error"]["field"] == field
    assert "Traceback" not in body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/decide/invite", {"to": "1212", "call_id": "c"}, "source_ip"),
        ("/v1/decide/invite", {"source_ip": "1.2.3", "to": "1212", "call_id": "c"}, "source_ip"),
        ("/v1/decide/invite", {"source_ip": "127.0.0.10", "call_id": "c"}, "to"),
        (
            "/v1/decide/invite",
            {"source_ip": "127.0.0.10", "to": "1234567890123456", "call_id": "c"},
            "to",
        ),
        (
            "/v1/decide/invite",
            {"source_ip": "127.0.0.10", "to": "\u0661\u0662\u0663", "call_id": "c"},
            "to",
        ),
        ("/v1/decide/invite", {"source_ip": "127.0.0.10", "to": "1212"}, "call_id"),
        (
            "/v1/decide/invite",
            {"source_ip": "127.0.0.10", "to": "1212", "call_id": "c", "auth_user": "x" * 300},
            "auth_user",
        ),
        (
            "/v1/decide/invite",
            {"source_ip": "127.0.0.10", "to": "1212", "call_id": "a\r\nb"},
            "call_id",
        ),
        ("/v1/credentials", {}, "username"),
        ("/v1/credentials", {"username": "acme-pbx", "algorithm": "SHA-512"}, "algorithm"),
        ("/v1/acl", {"ip": "localhost"}, "ip"),
        ("/v1/did", {"number": ""}, "number"),
        ("/v1/lcr", {"number": "+"}, "number"),
        ("/v1/routes/custom", {"org_id": "not-a-uuid", "number": "1"}, "org_id"),
    ],
)
async def test_invalid_parameters_are_400_naming_the_field(
    api: Api, path: str, params: dict[str, str], field: str
) -> None:
    """Each invalid parameter is a 400 in the one error shape, naming the field."""
    status, body = await api.get(path, **params)
    assert_error(status, body, 400, "invalid_parameter", field)


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b"{not json", "body"), (b"[1, 2]", "body"), (b'"text"', "body")],
)
async def test_bad_json_bodies(api: Api, raw: bytes, field: str) -> None:
    """A body that is not a JSON object is a 400 naming `body`."""
    resp = await api.client.post(
        "/v1/decide/invite", data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(resp.status, await resp.json(), 400, "invalid_parameter", field)


async def test_wrong_json_types_are_400(api: Api) -> None:
    """A JSON value of the wrong type is a 400 naming the field."""
    status, body = await api.post(
        "/v1/decide/invite", {"source_ip": 127, "to": "1", "call_id": "c"}
    )
    assert_error(status, body, 400, "invalid_parameter", "source_ip")


async def test_oversized_body_is_413(api: Api) -> None:
    """A body over the cap is 413 in the one error shape."""
    resp = await api.client.post(
        "/v1/decide/invite",
        data=b"{" + b" " * 20000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp.status, await resp.json(), 413, "payload_too_large", None)


async def test_unknown_path_and_method_use_the_same_shape(api: Api) -> None:
    """Unknown paths (404) and methods (405) use the same error shape."""
    status, body = await api.get("/v1/nothing")
    assert_error(status, body, 404, "not_found", None)
    resp = await api.client.delete("/v1/lcr")
    assert_error(resp.status, await resp.json(), 405, "method_not_allowed", None)


async def test_bad_input_changes_nothing(api: Api) -> None:
    """Refused requests leave Redis exactly as it was."""
    keys_before = sorted(await api.service.cache.client.keys("*"))
    for _ in range(3):
        await api.get("/v1/decide/invite", source_ip="bogus", to="1", call_id="c")
        await api.get("/v1/credentials", username="x" * 400)
    assert sorted(await api.service.cache.client.keys("*")) == keys_before


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/decide/invite", "text/plain"),
        ("/v1/events/call", "text/plain"),
        ("/v1/events/calls", "application/x-www-form-urlencoded"),
        ("/v1/events/register", "application/octet-stream"),
    ],
)
async def test_a_body_that_is_not_declared_json_is_415(
    api: Api, path: str, content_type: str
) -> None:
    """JSON endpoints read only what is sent as JSON: a text or form body that happens
    to parse is refused with 415, and nothing is stored."""
    before = sorted(await api.service.cache.client.keys("*"))
    body = b'{"event": "end", "call_id": "c", "ts": 1790000000, "org_id": null}'
    resp = await api.client.post(path, data=body, headers={"Content-Type": content_type})
    assert_error(resp.status, await resp.json(), 415, "unsupported_media_type", "Content-Type")
    assert sorted(await api.service.cache.client.keys("*")) == before


async def test_a_call_id_longer_than_a_cdr_holds_is_refused_at_the_decision(api: Api) -> None:
    """cdrs.call_id is VARCHAR(255): a longer Call-ID is a 400 before anything is
    admitted, not a CDR the database refuses later."""
    status, body = await api.get(
        "/v1/decide/invite", source_ip="127.0.0.10", to="12125551234", call_id="c" * 256
    )
    assert_error(status, body, 400, "invalid_parameter", "call_id")
    assert (await api.decide(source_ip="127.0.0.10", to="12125551234", call_id="c" * 255))[
        "verdict"
    ] == "route"


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"cause": "hung_up_angrily"}, "cause"), ({"call_id": "c" * 256}, "call_id")],
    ids=["undocumented-cause", "call-id-too-long"],
)
async def test_a_report_with_a_value_the_cdr_cannot_hold_is_refused(
    api: Api, extra: dict[str, str], field: str
) -> None:
    """Refused with 400 naming the field, so it is never acknowledged and then lost."""
    report = {"event": "end", "call_id": "c", "ts": 1_790_000_000, **extra}
    status, body = await api.post("/v1/events/call", report)
    assert_error(status, body, 400, "invalid_parameter", field)
