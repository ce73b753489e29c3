"""Each Lua script's named KEYS and ARGV (its header) match the typed builder Python
passes them through, so a wrong count or order fails here, not on a call."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from sipdata.cache import scripts

FILES = sorted(
    p.name.removesuffix(".lua")
    for p in resources.files("sipdata.cache").joinpath("scripts").iterdir()
    if p.name.endswith(".lua")
)


def test_every_script_file_has_a_builder_and_every_builder_a_file() -> None:
    """No script runs without a typed builder, and no builder names a missing file."""
    assert sorted(scripts.SHAPES) == FILES


@pytest.mark.parametrize("name", sorted(scripts.SHAPES))
def test_header_names_the_builder_fields_in_order(name: str) -> None:
    """`-- KEYS:` / `-- ARGV:` list exactly the NamedTuple fields, fixed part then
    the repeated part (`then per ...:`)."""
    shape, header = scripts.SHAPES[name], scripts.header(name)
    assert header.keys == shape.keys._fields
    assert header.keys_each == shape.keys_each._fields
    assert header.argv == shape.argv._fields
    assert header.argv_each == shape.argv_each._fields


@pytest.mark.parametrize("name", sorted(scripts.SHAPES))
def test_the_script_reads_its_named_arguments_by_name(name: str) -> None:
    """Every fixed KEYS/ARGV name is a name in the script's code (or a function it
    includes), not only in its comment: the header cannot drift from the code."""
    code = "\n".join(
        line for line in scripts.source(name).splitlines() if not line.lstrip().startswith("--")
    )
    header = scripts.header(name)
    missing = [n for n in header.keys + header.argv if not re.search(rf"\b{n}\b", code)]
    assert missing == []


@pytest.mark.parametrize("name", sorted(scripts.SHAPES))
def test_includes_resolve_and_the_source_has_no_directive_left(name: str) -> None:
    """`--! include` pulls in the shared function; Redis never sees the directive."""
    assert "--! include" not in scripts.source(name)


def test_a_builder_fixes_count_and_order() -> None:
    """Arguments are built by name; the flat list follows the header's order."""
    argv = scripts.ChannelCountsArgv(trunk_set_prefix="channels:trunk:", now_ms=5)
    assert scripts.flat(argv) == [5, "channels:trunk:"]
    with pytest.raises(TypeError):
        scripts.ChannelCountsArgv(5)  # type: ignore[call-arg]
