"""The OpenAPI document's list filters are the ones the handlers accept: the document
lists them by hand, the store's resources (db/admin.py) are what the code reads."""

from __future__ import annotations

from sipdata.admin.openapi import document
from sipdata.serving.admin import RESOURCES

PAGING = {"cursor", "limit"}


def test_every_documented_list_filter_is_accepted_and_every_accepted_one_documented() -> None:
    lists = 0
    for path, ops in document()["paths"].items():
        get = ops.get("get")
        if not path.startswith("/v1/admin/") or get is None or path.endswith("}"):
            continue
        lists += 1
        documented = {p["name"] for p in get["parameters"] if p["in"] == "query"} - PAGING
        name = path.rsplit("/", 1)[1]
        accepted = set(RESOURCES[name].filters)
        if name == "acl":  # its trunk is the path's
            accepted -= {"trunk_id"}
        assert documented == accepted, (path, documented ^ accepted)
    assert lists == 8
