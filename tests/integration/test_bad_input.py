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
    status, body = await api.get(path, **params)
    assert_error(status, body, 400, "invalid_parameter", field)


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b"{not json", "body"), (b"[1, 2]", "body"), (b'"text"', "body")],
)
async def test_bad_json_bodies(api: Api, raw: bytes, field: str) -> None:
    resp = await api.client.post(
        "/v1/decide/invite", data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(resp.status, await resp.json(), 400, "invalid_parameter", field)


async def test_wrong_json_types_are_400(api: Api) -> None:
    status, body = await api.post(
        "/v1/decide/invite", {"source_ip": 127, "to": "1", "call_id": "c"}
    )
    assert_error(status, body, 400, "invalid_parameter", "source_ip")


async def test_oversized_body_is_413(api: Api) -> None:
    resp = await api.client.post(
        "/v1/decide/invite",
        data=b"{" + b" " * 20000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp.status, await resp.json(), 413, "payload_too_large", None)


async def test_unknown_path_and_method_use_the_same_shape(api: Api) -> None:
    status, body = await api.get("/v1/nothing")
    assert_error(status, body, 404, "not_found", None)
    resp = await api.client.delete("/v1/lcr")
    assert_error(resp.status, await resp.json(), 405, "method_not_allowed", None)


async def test_bad_input_changes_nothing(api: Api) -> None:
    keys_before = sorted(await api.service.cache.client.keys("*"))
    for _ in range(3):
        await api.get("/v1/decide/invite", source_ip="bogus", to="1", call_id="c")
        await api.get("/v1/credentials", username="x" * 400)
    assert sorted(await api.service.cache.client.keys("*")) == keys_before
