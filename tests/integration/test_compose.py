"""deploy/compose.yaml stays consistent with what it starts: every sipdata setting it
sets exists and validates, the sentinels it names monitor the service sipdata asks
for, Kamailio's nodes are the sipdata services, and every define it passes is one the
routing script takes. (No engine runs containers here; test_image.py runs the images.)"""

from __future__ import annotations

import re
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sipdata.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
# ${NAME:?message} and ${NAME:-default}: what an operator's environment fills in.
VARIABLE = re.compile(r"\$\{(\w+)(?::[?-]([^}]*))?\}")


def substituted(value: str) -> str:
    """A value with the operator's variables filled in (a default, or a sample)."""
    return VARIABLE.sub(
        lambda m: m.group(2) if ":-" in m.group(0) else f"sample-{m.group(1)}", value
    )


def load() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services() -> dict[str, Any]:
    found: dict[str, Any] = load()["services"]
    return found


def sipdata_services() -> dict[str, Any]:
    """The services that run `sipdata serve` (the sipdata image, default command)."""
    return {
        name: s
        for name, s in services().items()
        if "sipdata:" in s.get("image", "") and "command" not in s
    }


def kamailio_command() -> list[str]:
    entry = services()["kamailio"]["entrypoint"]
    assert entry[:2] == ["sh", "-c"]
    return shlex.split(entry[2].replace("$$", "$"))


def kamailio_defines() -> dict[str, str]:
    """The -A NAME=VALUE defines of Kamailio's command line, quotes removed."""
    words = kamailio_command()
    defines = [words[i + 1] for i, w in enumerate(words) if w == "-A"]
    return dict(d.split("=", 1) for d in defines)


def test_two_sipdata_nodes_whose_settings_all_exist_and_validate() -> None:
    """Each node's SIPDATA_* variables name real settings (a typo would be ignored
    silently at run time) and build valid Settings, which serve checks for exposure."""
    nodes = sipdata_services()
    assert len(nodes) == 2, sorted(nodes)
    known = {PREFIX + f.name.upper() for f in fields(Settings)}
    for name, node in nodes.items():
        env = {k: substituted(str(v)) for k, v in node["environment"].items()}
        assert set(env) <= known, (name, set(env) - known)
        settings = Settings.from_env(env)
        settings.validate()
        settings.check_exposure()
        assert settings.redis_replicas_ack >= 1, "acknowledged reports must survive a failover"


def test_the_sentinels_named_exist_and_monitor_the_service_sipdata_asks_for() -> None:
    """SIPDATA_REDIS_SENTINELS lists services of this file, on the port their
    configuration opens, watching the primary under SIPDATA_REDIS_SENTINEL_SERVICE."""
    all_services = services()
    for node in sipdata_services().values():
        settings = Settings.from_env(
            {k: substituted(str(v)) for k, v in node["environment"].items()}
        )
        addresses = settings.sentinel_addresses()
        assert len(addresses) == 3
        for host, port in addresses:
            script = all_services[host]["command"][2]
            assert f"port {port}" in script
            monitor = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script)
            assert monitor, script
            service, primary, primary_port, quorum = monitor.groups()
            assert service == settings.redis_sentinel_service
            assert primary in all_services and int(quorum) == 2
            assert primary_port == "6379"


def test_kamailio_asks_both_nodes_with_the_nodes_secret_and_known_defines() -> None:
    """Kamailio's SIPDATA_NODES are exactly the sipdata services on their port, the
    secret is the nodes' token, and every -A names a define kamailio.cfg takes."""
    defines = kamailio_defines()
    nodes = defines["SIPDATA_NODES"].strip('"').split(",")
    hosts = {urlsplit(u).hostname: urlsplit(u).port for u in nodes}
    sipdata = sipdata_services()
    assert set(hosts) == set(sipdata)
    for host, port in hosts.items():
        assert str(port) == str(sipdata[host]["environment"]["SIPDATA_HTTP_PORT"])
    token = sipdata["sipdata-a"]["environment"]["SIPDATA_API_TOKEN"]
    assert "$SIPDATA_API_TOKEN" in defines["SIPDATA_SECRET"]
    assert services()["kamailio"]["environment"]["SIPDATA_API_TOKEN"] == token
    script = "".join(p.read_text() for p in (ROOT / "kamailio").glob("*.cfg"))
    for name in defines:
        assert re.search(rf"^#!(try)?def(ine)? {name}\b", script, re.M), name


def test_every_dependency_and_build_file_exists() -> None:
    """depends_on names services of this file; each build's Dockerfile is there."""
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on", [])
        for other in depends:
            assert other in all_services, (name, other)
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), (name, build)


@pytest.mark.parametrize("variable", ["SIPDATA_API_TOKEN", "POSTGRES_PASSWORD"])
def test_secrets_must_be_given_never_defaulted(variable: str) -> None:
    """The secrets have no default in the file: compose refuses to start without them."""
    text = COMPOSE.read_text()
    uses = re.findall(rf"\$\{{{variable}(:[?-][^}}]*)?\}}", text)
    assert uses and all(u.startswith(":?") for u in uses), uses
