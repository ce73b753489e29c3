"""Real processes for the end-to-end suite: sipdata, Kamailio and SIPp, each on free ports."""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# Every SIPp run's summary line, printed together at the end of the session.
SUMMARIES: list[str] = []


def require(binary: str) -> str:
    """The path of a binary the suite cannot run without; fails loudly when missing."""
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if path is None:
        raise RuntimeError(f"{binary} is not installed: run `make kamailio` (kamailio/install.sh)")
    return path


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Exited(RuntimeError):
    """The process being waited for has died: no point waiting longer."""


def wait_up(check: Any, what: str, timeout_s: float = 20.0) -> None:
    """Until `check()` is true (its exceptions count as not yet), or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout_s}s ({last})")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)


class Sipdata:
    """`sipdata serve` as its own process, as deployed."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "SIPDATA_HTTP_PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sipdata", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_up(self._ready, "sipdata")
        except BaseException:
            # its own session: a failed start would outlive the test and drain
            # (and strand) later tests' reports from the shared Redis db
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited(f"sipdata exited: {self.log_path.read_text()[-2000:]}")
        return bool(self.get("/ready")["status"] == "ready")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGCONT)  # a paused process cannot take SIGTERM
            _stop(self.proc)

    def pause(self) -> None:
        """Freeze the process: it accepts connections and never answers (a hung service)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return orjson.loads(resp.read())


class Kamailio:
    """Kamailio with the project's routing script, listening on its own UDP port."""

    def __init__(self, sipdata_url: str, workdir: Path, defines: Sequence[str] = ()) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
        self.workdir = workdir
        self.log_path = workdir / "kamailio.log"
        defaults = [
            f"SIP_LISTEN=udp:127.0.0.1:{self.port}",
            f'SIPDATA_URL="{sipdata_url}"',
            "SIP_CHILDREN=2",
            # Longer than any test waits: a report that arrives came through the
            # outbox, not the retry (tests of the retry set it to 1 s).
            'REPORT_RETRY_TIMER="name=reports;interval=300;mode=1;"',
            # The carriers here are SIPp scenarios that expect their one call: an
            # OPTIONS probe would be a call they did not expect. Gateway health
            # tests pass WITH_GATEWAY_PROBES and bring gateways that answer them.
            "WITHOUT_GATEWAY_PROBES",
            f'GATEWAY_LIST_FILE="{ROOT / "kamailio" / "sipdata-gateways.list"}"',
            f'CTL_SOCKET="unix:{workdir}/kamailio-ctl"',
            f'RPC_FIFO="{workdir}/kamailio_rpc.fifo"',
        ]
        given = {d.split("=", 1)[0] for d in defines}
        if "WITH_GATEWAY_PROBES" in given:
            given.add("WITHOUT_GATEWAY_PROBES")
        self.defines = [d for d in defaults if d.split("=", 1)[0] not in given] + list(defines)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        # -x tlsf: the memory manager docs/kamailio.md recommends (make run uses it)
        args = [require("kamailio"), "-f", str(KAMAILIO_CFG), "-DD", "-E", "-x", "tlsf"]
        args += ["-Y", str(self.workdir), "-P", str(self.workdir / "kamailio.pid")]
        for define in self.defines:
            args += ["-A", define]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_up(self._answers_options, "kamailio")
        except BaseException:
            self.stop()  # as Sipdata.start: never outlive a failed start
            raise

    def _answers_options(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Exited(f"kamailio exited: {self.log_path.read_text()[-2000:]}")
        call_id = uuid.uuid4().hex
        msg = (
            f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={call_id[:8]}\r\n"
            f"To: <sip:127.0.0.1:{self.port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            msg = msg.replace("127.0.0.1:9", f"127.0.0.1:{s.getsockname()[1]}")
            s.settimeout(0.5)
            s.sendto(msg.encode(), ("127.0.0.1", self.port))
            return s.recv(4096).startswith(b"SIP/2.0 200")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rpc(self, *command: str) -> str:
        """A control command through kamcmd (e.g. `htable.dump reports`)."""
        done = subprocess.run(
            [require("kamcmd"), "-s", f"unix:{self.workdir}/kamailio-ctl", *command],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def script_faults(self) -> list[str]:
        """Errors that mean the routing script itself misbehaved (a failed assignment, a
        function refused at run time), as opposed to the script reporting trouble
        (`<script>`) or libcurl failing to reach a sipdata the test stopped."""
        expected = ("ERROR: <script>", "ERROR: http_async_client")
        return [
            line
            for line in self.log().splitlines()
            if ("ERROR:" in line or "CRITICAL:" in line or "BUG:" in line)
            and not any(e in line for e in expected)
        ]


@dataclass
class SippResult:
    """What one SIPp run did, from its exit code and its own statistics files."""

    name: str
    returncode: int
    successful: int
    failed: int
    rtt_ms: list[float] = field(default_factory=list)
    errors: str = ""

    def percentile(self, p: float) -> float | None:
        if not self.rtt_ms:
            return None
        ordered = sorted(self.rtt_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}ms"

        test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
        return (
            f"{test} [sipp {self.name}] calls={self.successful + self.failed} ok={self.successful} "
            f"failed={self.failed} rc={self.returncode} response p50={ms(self.percentile(50))} "
            f"p90={ms(self.percentile(90))} p99={ms(self.percentile(99))}"
        )


class Sipp:
    """One SIPp process on its own address: a caller (-sf uac…) or a callee (uas…)."""

    def __init__(
        self,
        scenario: str,
        workdir: Path,
        *,
        ip: str,
        port: int = 5060,
        target: str | None = None,
        service: str | None = None,
        calls: int = 1,
        rate: float | None = None,
        timeout_s: float = 15.0,
        replace: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        self.name = name or f"{scenario}@{ip}"
        self.workdir = workdir / f"sipp-{self.name}-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir(parents=True)
        text = (SCENARIOS / f"{scenario}.xml").read_text()
        for key, value in (replace or {}).items():
            text = text.replace(key, value)
        self.scenario_path = self.workdir / f"{scenario}.xml"
        self.scenario_path.write_text(text)
        self.ip = ip
        # SIPp's own default is 5060, which two parties on one address would share
        self.port = port or free_port(socket.SOCK_DGRAM, ip)
        cmd = [require("sipp"), "-sf", str(self.scenario_path), "-i", ip, "-p", str(self.port)]
        cmd += ["-m", str(calls), "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin"]
        cmd += ["-mp", str(free_port(socket.SOCK_DGRAM, ip))]
        cmd += ["-trace_err", "-error_file", str(self.workdir / "errors.log")]
        cmd += ["-trace_stat", "-stf", str(self.workdir / "stat.csv"), "-fd", "1"]
        cmd += ["-trace_rtt", "-rtt_freq", "1"]
        cmd += ["-trace_msg", "-message_file", str(self.workdir / "messages.log")]
        if rate is not None:
            cmd += ["-r", str(rate)]
        if service is not None:
            cmd += ["-s", service]
        cmd += list(args)
        if target is not None:
            cmd.append(target)
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def call_id_marker(self) -> str:
        """Part of every Call-ID this SIPp sends ([call_number]-[pid]@[local_ip])."""
        assert self.proc is not None
        return f"-{self.proc.pid}@{self.ip}"

    def start(self) -> Sipp:
        with (self.workdir / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.workdir,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        return self

    def wait(self, timeout_s: float = 60.0) -> SippResult:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(self.proc)
            rc = -1
        result = self._result(rc)
        SUMMARIES.append(result.summary())
        return result

    def messages(self) -> str:
        """Every SIP message this SIPp sent and received (its -trace_msg file)."""
        path = self.workdir / "messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run(self, timeout_s: float = 60.0) -> SippResult:
        return self.start().wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def _result(self, rc: int) -> SippResult:
        successful = failed = 0
        stat = self.workdir / "stat.csv"
        if stat.exists():
            with stat.open() as fh:
                rows = list(csv.reader(fh, delimiter=";"))
            if len(rows) >= 2:
                header, last = rows[0], rows[-1]
                successful = int(last[header.index("SuccessfulCall(C)")])
                failed = int(last[header.index("FailedCall(C)")])
        rtts: list[float] = []
        for path in self.workdir.glob("*_rtt.csv"):
            with path.open() as fh:
                lines = list(csv.reader(fh, delimiter=";"))
            for row in lines[1:]:
                with contextlib.suppress(ValueError, IndexError):
                    rtts.append(float(row[1]))
        errors = self.workdir / "errors.log"
        stderr = self.workdir / "stderr.log"
        text = (errors.read_text(errors="replace") if errors.exists() else "") + (
            stderr.read_text(errors="replace") if stderr.exists() else ""
        )
        return SippResult(self.name, rc, successful, failed, rtts, text[-3000:])


@contextlib.contextmanager
def running(*procs: Sipp) -> Iterator[tuple[Sipp, ...]]:
    """Callees started before the caller, stopped whatever happens."""
    for p in procs:
        p.start()
    for p in procs:
        wait_up(functools.partial(_bound, p.ip, p.port), f"sipp on {p.ip}:{p.port}", 5)
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def _bound(ip: str, port: int) -> bool:
    """Whether something holds ip:port (UDP): SIPp binds a moment after it starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return True
        return False


class Listener:
    """A bare UDP socket on a carrier's address: proves that nothing was sent there."""

    def __init__(self, ip: str, port: int = 5060) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.setblocking(False)

    def received(self) -> list[bytes]:
        out = []
        with contextlib.suppress(BlockingIOError):
            while True:
                out.append(self.sock.recv(65535))
        return out

    def close(self) -> None:
        self.sock.close()
