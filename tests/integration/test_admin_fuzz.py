"""Property-based fuzz of the admin API from its OpenAPI document: for every documented
admin operation, bodies and queries built from the document's field names with any
JSON values, ids of real and unknown rows, and stale or missing If-Match. Whatever
arrives: no server error, and every answer is what the document says that operation
answers with that status (its row, page or the error shape), checked as JSON Schema
2020-12, the dialect of OpenAPI 3.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sipdata.admin.openapi import document
from sipdata.app import create_app
from sipdata.db.provision import demo_id
from sipdata.settings import Settings

from .test_admin_api import make_key

pytestmark = pytest.mark.usefixtures("warm")

DOC = document()
SCHEMAS = DOC["components"]["schemas"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
IDS = st.sampled_from(
    [
        demo_id("trunk:acme-ip"),
        demo_id("org:acme"),
        demo_id("org:globex"),
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
        "%00",
    ]
)
OPERATIONS = [
    (method.upper(), path, op)
    for path, ops in DOC["paths"].items()
    if path.startswith("/v1/admin/")
    for method, op in ops.items()
]


def _valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value the schema admits (mostly), so that writes get past the checks too."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema.get("format") == "uuid":
        return st.sampled_from([demo_id("org:acme"), demo_id("org:globex")])
    if schema.get("type") == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if schema.get("type") == "array":
        return st.lists(st.sampled_from(["*", "trunks:read", "acl:*", "audit:read"]), min_size=1)
    if schema.get("type") == "object":
        return st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True)
    if schema.get("description", "").startswith("address or CIDR"):
        return st.ip_addresses().map(str) | st.sampled_from(["198.51.100.0/28", "2001:db8:1::/48"])
    return st.text(min_size=schema.get("minLength", 0), max_size=20)


def _body(op: dict[str, Any]) -> st.SearchStrategy[Any]:
    content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = content.get("schema", {}).get("$ref")
    if ref is None:
        return st.none()
    properties = SCHEMAS[ref.rsplit("/", 1)[1]]["properties"]
    fitting = st.fixed_dictionaries(
        {}, optional={name: _valid(schema) | JSON for name, schema in properties.items()}
    )
    return fitting | st.dictionaries(st.text(max_size=10), JSON, max_size=3) | JSON


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Any, dict[str, str]]:
    method, path, op = draw(st.sampled_from(OPERATIONS))
    for name in ("{id}", "{acl_id}"):
        path = path.replace(name, draw(IDS))
    query = {
        p["name"]: draw(st.text(max_size=12) | IDS)
        for p in op.get("parameters", [])
        if p["in"] == "query" and draw(st.booleans())
    }
    headers = (
        {"If-Match": draw(st.sampled_from(['"stale"', "*", ""]))} if draw(st.booleans()) else {}
    )
    return method, path, (draw(_body(op)), query), headers


def _conforms(status: int, body: Any, op: dict[str, Any]) -> str | None:
    """None if the answer is one the document describes for this operation (its JSON
    Schema, with the document's components), else why not."""
    if status == 204:
        return None if body is None else "a 204 with a body"
    documented = op["responses"].get(str(status)) or op["responses"].get("default")
    if documented is None:
        return f"status {status} is not documented"
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    root = {"components": DOC["components"], **schema}
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
    return str(errors[0].message) if errors else None


@pytest.fixture
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[TestClient, str]]:
    _, secret = await make_key(pool)
    c = TestClient(TestServer(create_app(replace(settings, api_token="edge"))))
    await c.start_server()
    yield c, secret
    await c.close()


async def test_no_request_makes_a_server_error_or_an_undocumented_answer(
    client: tuple[TestClient, str],
) -> None:
    """Hypothesis drives from a thread; each request runs on the app's own loop."""
    test_client, secret = client
    loop = asyncio.get_running_loop()
    ops = {(m, p): op for m, p, op in OPERATIONS}

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests())
    def run(request: tuple[str, str, Any, dict[str, str]]) -> None:
        method, path, (body, query), headers = request

        async def send() -> tuple[int, Any]:
            resp = await test_client.request(
                method,
                path,
                params=query,
                data=json.dumps(body) if body is not None else None,
                headers={
                    "Authorization": f"Bearer {secret}",
                    "Content-Type": "application/json",
                    **headers,
                },
            )
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

        status, answer = asyncio.run_coroutine_threadsafe(send(), loop).result(timeout=60)
        assert status < 500, (method, path, body, query, answer)
        template = next((op for (m, p), op in ops.items() if m == method and _same(p, path)), None)
        assert template is not None, (method, path)
        why = _conforms(status, answer, template)
        assert why is None, (method, path, status, answer, why)

    await asyncio.to_thread(run)


def _same(template: str, path: str) -> bool:
    a, b = template.split("/"), path.split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))
