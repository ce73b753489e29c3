"""The folders are the architecture (docs/architecture.md): exactly one folder talks to each
outside system, decisions are pure, and the layers import downwards only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sipdata"
MODULES = sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (function-level included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def where(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def uses(path: Path, prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in imports(path))


# (library or package, the only places that may import it)
OWNERS = [
    ("redis", ("sipdata/cache/",)),
    ("hiredis", ("sipdata/cache/",)),
    ("asyncpg", ("sipdata/db/",)),
    ("aiohttp", ("sipdata/http/", "sipdata/app.py")),
]


@pytest.mark.parametrize(("library", "owners"), OWNERS, ids=[o[0] for o in OWNERS])
def test_one_folder_talks_to_each_outside_system(library: str, owners: tuple[str, ...]) -> None:
    """Only its folder imports a client library; everything else goes through it."""
    offenders = [where(p) for p in MODULES if uses(p, library) and not where(p).startswith(owners)]
    assert offenders == []


# (folder, sipdata packages it must not import)
LAYERS = [
    ("sipdata/http/", ("sipdata.cache", "sipdata.db", "sipdata.jobs")),
    ("sipdata/cache/", ("sipdata.db", "sipdata.serving", "sipdata.jobs", "sipdata.http")),
    ("sipdata/db/", ("sipdata.cache", "sipdata.serving", "sipdata.jobs", "sipdata.http")),
    ("sipdata/serving/", ("sipdata.jobs", "sipdata.http")),
    ("sipdata/jobs/", ("sipdata.serving", "sipdata.http")),
]


@pytest.mark.parametrize(("folder", "forbidden"), LAYERS, ids=[f[0] for f in LAYERS])
def test_layers_import_downwards_only(folder: str, forbidden: tuple[str, ...]) -> None:
    """Handlers reach data only through serving; cache and db never know each other."""
    offenders = [
        (where(p), f)
        for p in MODULES
        if where(p).startswith(folder)
        for f in forbidden
        if uses(p, f)
    ]
    assert offenders == []


def test_decisions_are_pure() -> None:
    """decide/ imports the standard library, RE2 and itself (and the error tree) only:
    no I/O, so its tables and properties need no server."""
    allowed = set(sys.stdlib_module_names) | {"re2", "sipdata"}
    offenders = []
    for path in MODULES:
        if not where(path).startswith("sipdata/decide/"):
            continue
        for module in imports(path):
            top = module.split(".")[0]
            if top not in allowed or (
                top == "sipdata"
                and not module.startswith(("sipdata.decide", "sipdata.errors"))
                and module != "sipdata"
            ):
                offenders.append((where(path), module))
    assert offenders == []


def test_only_settings_reads_the_environment() -> None:
    """One frozen Settings is built from the environment; nothing else reads it."""
    offenders = [
        where(p)
        for p in MODULES
        if ("os.environ" in p.read_text() or "getenv" in p.read_text())
        and where(p) != "sipdata/settings.py"
    ]
    assert offenders == []


def test_modules_stay_small() -> None:
    """One concern per module: none grows past ~400 lines."""
    assert [where(p) for p in MODULES if len(p.read_text().splitlines()) > 420] == []
