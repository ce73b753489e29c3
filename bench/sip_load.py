"""SIPp through Kamailio in three configurations, in one run: the highest call rate
sustained for 30 s with no failed call, and INVITE -> final response percentiles.

(a) `fixed`: Kamailio relays to a destination fixed in its script (the ceiling);
(b) `native`: Kamailio's own modules on the same data (bench/native_data.py);
(c) `sipdata`: the project's kamailio/kamailio.cfg asking sipdata.
Every call: INVITE from the demo IP trunk acme-ip (127.0.0.10) to 12125551234,
answered by a SIPp UAS on bravo's gateway address (127.0.0.102), ACK, BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.native_data import export
from bench.procs import ROOT, serving, stop
from sipdata.settings import Settings

SCENARIOS = ROOT / "tests" / "e2e" / "scenarios"
# (c) runs the Kamailio script of the sipdata under test (BENCH_SIPDATA_SRC for a
# before/after comparison: the script and the service change together).
CONFIGS = {
    "fixed": ROOT / "bench" / "kamailio" / "fixed.cfg",
    "native": ROOT / "bench" / "kamailio" / "native.cfg",
    "sipdata": Path(os.environ.get("BENCH_SIPDATA_SRC") or ROOT) / "kamailio" / "kamailio.cfg",
}
CALLER, CALLEE, NUMBER = "127.0.0.10", "127.0.0.102", "12125551234"
# Each call lasts this long between ACK and BYE: with none, a BYE relayed by one
# Kamailio worker can overtake the ACK relayed by another, and the callee's
# scenario counts that reordering as a failed call.
CALL_MS = 200
UAC = SCENARIOS / "uac_call.xml"
# A caller for whom a 503 is an answer too (the overload probe counts both).
UAC_OR_503 = ROOT / "bench" / "sipp" / "uac_call_or_503.xml"
SHM_MB = 1024
# The same workers for all three configurations; (a) and (b)'s own defines.
COMMON = ["SIP_CHILDREN=4"]
FIXED_DEFINES = [*COMMON, f'FIXED_DST="sip:{CALLEE}:5060"']


def native_defines(dbtext: Path) -> list[str]:
    return [*COMMON, f'DBURL="text://{dbtext}"']


# Kamailio's memory manager, the same for all three: its default (qm, the one
# with debugging aids) was 14 % of (c)'s Kamailio CPU in qm_malloc alone
# (perf record on Kamailio under bench.sip_cpu); TLSF allocates in constant time.
MEMORY_MANAGER = os.environ.get("BENCH_KAMAILIO_MEM", "-x tlsf").split()


def udp_port(ip: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _answers(port: int) -> bool:
    """Kamailio is up once it answers anything to an OPTIONS."""
    tag = uuid.uuid4().hex[:10]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        me = s.getsockname()[1]
        s.sendto(
            (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};"
                f"branch=z9hG4bK{tag}\r\nFrom: <sip:probe@127.0.0.1>;tag={tag}\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: {tag}\r\nCSeq: 1 OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        s.settimeout(0.5)
        with contextlib.suppress(OSError):
            return s.recv(4096).startswith(b"SIP/2.0 ")
    return False


@contextlib.contextmanager
def kamailio(name: str, workdir: Path, defines: list[str]) -> Iterator[int]:
    port = udp_port()
    args = [
        "kamailio",
        "-f",
        str(CONFIGS[name]),
        "-DD",
        "-E",
        "-Y",
        str(workdir),
        "-P",
        str(workdir / "kamailio.pid"),
        # The same memory for all three: Kamailio's default 64 MB of shared memory
        # runs out under overload with http_async_client (libcurl handles live
        # there), and the instance then fails every call until restarted.
        "-m",
        str(SHM_MB),
        *MEMORY_MANAGER,
        "-A",
        f"SIP_LISTEN=udp:127.0.0.1:{port}",
    ]
    for d in defines:
        args += ["-A", d]
    proc = subprocess.Popen(
        args,
        stdout=(workdir / f"kamailio-{name}.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio ({name}) did not start: see {workdir}")
        yield port
    finally:
        stop([proc])


@contextlib.contextmanager
def callee(workdir: Path) -> Iterator[None]:
    proc = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(ROOT / "bench" / "sipp" / "uas_answer.xml"),
            "-i",
            CALLEE,
            "-p",
            "5060",
            "-mp",
            str(udp_port(CALLEE)),
            "-nostdin",
            "-bind_local",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "uas.log").open("ab"),
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"the SIPp callee did not start: {workdir / 'uas.log'}")
        yield
    finally:
        stop([proc])


def calls(
    target: str, rate: int, seconds: int, workdir: Path, scenario: Path = UAC
) -> dict[str, Any]:
    """One SIPp caller run: `rate` calls/s for `seconds`; did every call succeed in time?"""
    run = workdir / f"uac-{rate}-{seconds}-{uuid.uuid4().hex[:4]}"
    run.mkdir()
    total = rate * seconds
    cmd = [
        "sipp",
        "-sf",
        str(scenario),
        "-i",
        CALLER,
        "-p",
        str(udp_port(CALLER)),
        "-mp",
        str(udp_port(CALLER)),
        "-s",
        NUMBER,
        target,
        "-r",
        str(rate),
        "-m",
        str(total),
        "-l",
        str(max(100, rate * 4)),
        "-nostdin",
        "-d",
        str(CALL_MS),
        "-trace_err",
        "-error_file",
        "errors.log",
        "-recv_timeout",
        "4000",
        "-timeout",
        f"{seconds + 60}s",
        "-trace_stat",
        "-stf",
        "stat.csv",
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        "200",
        "-trace_counts",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        check=False,
        cwd=run,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=seconds + 120,
    )
    wall = time.monotonic() - t0
    rows = list(csv.reader((run / "stat.csv").open(), delimiter=";"))
    header, last = rows[0], rows[-1]
    ok = int(last[header.index("SuccessfulCall(C)")])
    failed = int(last[header.index("FailedCall(C)")])
    rtt: list[float] = []
    for path in run.glob("*_rtt.csv"):
        for row in list(csv.reader(path.open(), delimiter=";"))[1:]:
            with contextlib.suppress(ValueError, IndexError):
                rtt.append(float(row[1]))
    # SIPp itself falling behind the asked rate is not "sustained" either.
    sustained = failed == 0 and ok == total and wall <= seconds * 1.1 + 3
    received = final_counts(run)
    return {
        "final": received,
        "rate": rate,
        "seconds": seconds,
        "ok": ok,
        "failed": failed,
        "wall_s": round(wall, 1),
        "rc": proc.returncode,
        "sustained": sustained,
        "p50_ms": percentile(rtt, 50),
        "p90_ms": percentile(rtt, 90),
        "p99_ms": percentile(rtt, 99),
        "samples": len(rtt),
    }


def final_counts(run: Path) -> dict[str, int]:
    """Final responses to the INVITE SIPp received, by code (its -trace_counts file)."""
    out: dict[str, int] = {}
    for path in run.glob("*_counts.csv"):
        rows = list(csv.reader(path.open(), delimiter=";"))
        if len(rows) < 2:
            continue
        header, last = rows[0], rows[-1]
        for i, name in enumerate(header):
            # columns are <index>_<message>_<direction>; the INVITE's finals come first
            parts = name.split("_")
            if len(parts) >= 3 and parts[1] in ("200", "503") and parts[2] == "Recv":
                with contextlib.suppress(ValueError, IndexError):
                    out[parts[1]] = out.get(parts[1]) or int(last[i])
    return out


def overload(target: str, rate: int, seconds: int, workdir: Path) -> dict[str, Any]:
    """Calls at `rate` (1.5 x the rate (c) sustained) with a caller that takes a 503 as
    an answer: the edge should refuse the excess at once and carry the rest."""
    run = calls(target, rate, seconds, workdir, scenario=UAC_OR_503)
    done = run["final"].get("200", 0)
    run["completed_per_s"] = done / seconds
    run["shed_per_s"] = run["final"].get("503", 0) / seconds
    return run


def search(target: str, workdir: Path, quick: bool) -> dict[str, Any]:
    """Double the rate until calls fail, bisect, then confirm for 30 s (lower on a miss)."""
    probe_s, confirm_s = (3, 5) if quick else (8, 30)
    tried: list[dict[str, Any]] = []

    def attempt(rate: int, seconds: int) -> bool:
        tried.append(calls(target, rate, seconds, workdir))
        return bool(tried[-1]["sustained"])

    good, bad = 0, None
    rate = 100
    while bad is None and rate <= 12800:
        if attempt(rate, probe_s):
            good, rate = rate, rate * 2
        else:
            bad = rate
    if bad is not None:
        for _ in range(2 if quick else 3):
            mid = (good + bad) // 2
            if mid <= good or mid >= bad:
                break
            if attempt(mid, probe_s):
                good = mid
            else:
                bad = mid
    best = None
    candidate = good
    for _ in range(4):
        if candidate < 10:
            break
        if attempt(candidate, confirm_s):
            best = tried[-1]
            break
        candidate = int(candidate * 0.85)
    return {"sustained": best, "tried": tried}


def sipdata_defines(url: str, token: str, work: Path) -> list[str]:
    """(c)'s -A defines: the sipdata to ask, its secret, control sockets in `work`.
    No gateway probes: the callee is a SIPp scenario that takes calls only (and (a)
    and (b) probe nothing either)."""
    return [
        *COMMON,
        "WITHOUT_GATEWAY_PROBES",
        f'SIPDATA_URL="{url}"',
        f'SIPDATA_SECRET="{token}"',
        f'CTL_SOCKET="unix:{work}/kamailio-ctl"',
        f'RPC_FIFO="{work}/kamailio_rpc.fifo"',
    ]


def run_all(
    env: Mapping[str, str], token: str, results: Path, workers: int, quick: bool
) -> dict[str, Any]:
    work = results / "sip"
    work.mkdir(exist_ok=True)
    dbtext = work / "dbtext"
    settings = Settings.from_env(env)
    exported = asyncio.run(export(settings, dbtext))
    out: dict[str, Any] = {"native_tables": exported, "workers": workers}
    with callee(work):
        with kamailio("fixed", work, FIXED_DEFINES) as port:
            out["fixed"] = search(f"127.0.0.1:{port}", work, quick)
        with kamailio("native", work, native_defines(dbtext)) as port:
            out["native"] = search(f"127.0.0.1:{port}", work, quick)
        with (
            serving(env, workers, work / "sipdata.log") as (url, _pids),
            kamailio("sipdata", work, sipdata_defines(url, token, work)) as port,
        ):
            target = f"127.0.0.1:{port}"
            out["sipdata"] = search(target, work, quick)
            best = (out["sipdata"]["sustained"] or {}).get("rate", 0)
            seconds = 5 if quick else 30
            if best:
                out["sipdata_70pct"] = calls(target, max(1, best * 7 // 10), seconds, work)
                out["sipdata_overload"] = overload(target, best * 3 // 2, seconds, work)
    rates = {k: (out[k]["sustained"] or {}).get("rate", 0) for k in CONFIGS}
    out["rates"] = rates
    out["c_over_a"] = rates["sipdata"] / rates["fixed"] if rates["fixed"] else None
    out["c_over_b"] = rates["sipdata"] / rates["native"] if rates["native"] else None
    return out


def summary_lines(sip: dict[str, Any]) -> list[str]:
    lines = [
        f"SIPp through Kamailio (sipdata workers: {sip['workers']}; b's tables: "
        f"{sip['native_tables']})"
    ]
    for name in CONFIGS:
        s = sip[name]["sustained"]
        if s is None:
            lines.append(f"  {name:8} no rate sustained")
            continue
        lines.append(
            f"  {name:8} {s['rate']:5d} calls/s for {s['seconds']} s, 0 failed; "
            f"INVITE->final p50 {s['p50_ms']} ms p90 {s['p90_ms']} p99 {s['p99_ms']}"
        )
    lines.append(f"  (c)/(a) = {sip['c_over_a']}, (c)/(b) = {sip['c_over_b']}")
    paced = sip.get("sipdata_70pct")
    if paced:
        lines.append(
            f"  sipdata at 70 %: {paced['rate']} calls/s, {paced['ok']} ok, {paced['failed']}"
            f" failed; INVITE->final p50 {paced['p50_ms']} ms p90 {paced['p90_ms']}"
            f" p99 {paced['p99_ms']}"
        )
    over = sip.get("sipdata_overload")
    if over:
        lines.append(
            f"  sipdata at 150 %: {over['rate']} calls/s offered, {over['completed_per_s']:.0f}/s"
            f" completed, {over['shed_per_s']:.0f}/s answered 503, {over['failed']} failed"
            f" (no final answer or another one); INVITE->final p50 {over['p50_ms']} ms"
            f" p99 {over['p99_ms']}"
        )
    return lines
