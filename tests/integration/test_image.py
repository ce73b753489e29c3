"""The image `make image` builds runs: its own sipdata, as the image's user, with the
image's environment, migrates a new database, loads the demo data and serves decisions.

`podman run` cannot start containers in this sandbox (crun may not set rlimits), so the
image's files are mounted (`podman image mount`) and its entrypoint run under chroot
with the image's configured user, environment and command: the same files, user and
settings a container would run, on the host's network.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from .conftest import PG, free_port
from .test_compose import kamailio_defines

IMAGE = os.environ.get("SIPDATA_IMAGE", "localhost/sipdata:dev")
PODMAN = ["podman", "--storage-driver", "vfs"]
TOKEN = "image-test-secret"
REDIS = "redis://127.0.0.1:6379/13"


@dataclass(frozen=True)
class Image:
    root: Path
    user: str
    env: dict[str, str]
    command: list[str]


def inspect(name: str) -> dict[str, Any]:
    """The image's configuration; a missing image or podman fails the test, naming why."""
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `make image` installs it and builds the images")
    found = subprocess.run(
        [*PODMAN, "image", "inspect", name], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        pytest.fail(f"no image {name}: `make image` builds it ({found.stderr.strip()})")
    config: dict[str, Any] = json.loads(found.stdout)[0]["Config"]
    return config


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    config = inspect(IMAGE)
    mounted = subprocess.run(
        [*PODMAN, "image", "mount", IMAGE], capture_output=True, text=True, check=True
    )
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    command = [*config.get("Entrypoint", []), *config.get("Cmd", [])]
    yield Image(Path(mounted.stdout.strip()), config.get("User", ""), env, command)
    subprocess.run([*PODMAN, "image", "unmount", IMAGE], capture_output=True, check=False)


@pytest.fixture
def database() -> Iterator[str]:
    """A new, empty database: the image's own `migrate` must create the schema."""
    name = f"sipdata_image_{os.getpid()}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{PG}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{PG}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def in_image(
    image: Image, args: list[str], env: dict[str, str], **kw: Any
) -> subprocess.Popen[bytes]:
    """The image's files under chroot, as its user, with its environment and `env`."""
    user = image.user or "root"
    return subprocess.Popen(
        ["chroot", f"--userspec={user}:{user}", str(image.root), *args],
        env={**image.env, "HOME": "/", **env},
        **kw,
    )


def ask(port: int, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_image_is_configured_to_serve_as_an_unprivileged_user(image: Image) -> None:
    """The image runs `sipdata serve` on every interface as user sipdata (uid 10001),
    never root, with the secret left to run time."""
    assert image.command == ["sipdata", "serve"]
    assert image.user == "sipdata"
    assert image.env["SIPDATA_HTTP_HOST"] == "0.0.0.0"
    assert "SIPDATA_API_TOKEN" not in image.env
    passwd = (image.root / "etc/passwd").read_text()
    assert any(line.startswith("sipdata:x:10001:") for line in passwd.splitlines())


def test_the_images_sipdata_migrates_warms_and_serves_until_ready(
    image: Image, database: str, tmp_path: Path
) -> None:
    """With only a database URL, a Redis URL and the secret, the image's own commands
    create the schema, load the demo data, and its entrypoint answers /ready and routes
    a call; SIGTERM stops it cleanly."""
    env = {"SIPDATA_DATABASE_URL": database, "SIPDATA_REDIS_URL": REDIS}
    for step in (["sipdata", "migrate"], ["sipdata", "demo-data"], ["sipdata", "warm"]):
        done = in_image(image, step, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = done.communicate(timeout=120)
        assert done.returncode == 0, (step, out.decode(errors="replace"))

    port = free_port()
    log = tmp_path / "serve.log"
    serve_env = {**env, "SIPDATA_HTTP_PORT": str(port), "SIPDATA_API_TOKEN": TOKEN}
    with log.open("wb") as out:
        proc = in_image(image, image.command, serve_env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if ask(port, "/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        status, body = ask(
            port,
            "/v1/decide/invite?source_ip=127.0.0.10&to=12125551234&call_id=image&dry_run=1",
        )
        assert status == 200 and body["verdict"] == "route", body
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text()


def test_the_kamailio_image_loads_the_script_with_the_compose_files_defines() -> None:
    """The Kamailio image's core loads every module the script needs (the built
    http_async_client's compile flags match the packaged core's) and parses the
    script with the defines deploy/compose.yaml passes."""
    image = os.environ.get("KAMAILIO_IMAGE", "localhost/sipdata-kamailio:dev")
    entry = inspect(image)["Entrypoint"]
    assert entry[0] == "kamailio"
    defines = [a for k, v in kamailio_defines().items() for a in ("-A", f"{k}={v}")]
    root = subprocess.run(
        [*PODMAN, "image", "mount", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        checked = subprocess.run(
            ["chroot", root, *entry, "-c", *defines],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SIPDATA_API_TOKEN": TOKEN},
        )
    finally:
        subprocess.run([*PODMAN, "image", "unmount", image], capture_output=True, check=False)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "ERROR" not in checked.stderr, checked.stderr[-3000:]
