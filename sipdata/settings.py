"""One frozen Settings, read once from the environment and validated."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sipdata.decide.breaker import BreakerConfig
from sipdata.decide.quality import QualityConfig
from sipdata.errors import ConfigError

T = TypeVar("T")

PREFIX = "SIPDATA_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of the service. Field `x` is read from `SIPDATA_X`."""

    http_host: str = "127.0.0.1"
    http_port: int = 8480
    database_url: str = "postgresql://postgres@127.0.0.1:5432/sipdata"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis through Sentinel (docs/operations.md, "Redis with Sentinel"):
    # "host:port,host:port,...", empty = connect to redis_url's host itself. The
    # primary is the one the sentinels name for redis_sentinel_service; db,
    # username and password still come from redis_url.
    redis_sentinels: str = ""
    redis_sentinel_service: str = "sipdata"
    # A report is acknowledged only once this many replicas hold it (WAIT, at
    # most redis_replicas_wait_ms); one that misses is kept back for Kamailio
    # to send again. With one replica, the loss of the primary then loses no
    # acknowledged report. 0 = acknowledge on the primary's reply.
    redis_replicas_ack: int = 0
    redis_replicas_wait_ms: int = 100
    # Digest realm used when a trunk's stored HA1 names none (see docs/api.md).
    realm: str = "sipdata.local"
    # Warmer: decisions follow captured database changes (jobs/follow.py); a full
    # reload runs when Redis has no generation, on a deck import, and, if this is
    # > 0, every warm_interval_s as belt and braces (0: never; the change log
    # misses nothing, and a full reload of a big deck costs a core for a minute).
    warm_interval_s: float = 0.0
    warmer_enabled: bool = True
    # How often the follower looks for changes without a NOTIFY to wake it (the
    # delivery guarantee; NOTIFY only makes it sooner), and how many it takes at once.
    change_poll_s: float = 0.5
    change_batch: int = 5000
    # How long a superseded generation stays readable after a switch; longer
    # than the catalog refresh so no request ever reads a vanished generation.
    generation_grace_s: int = 120
    catalog_refresh_s: float = 0.1
    # Read-through cache lifetimes: found rows, and "not found".
    readthrough_ttl_s: int = 30
    negative_ttl_s: int = 5
    # sipdata answers "degraded" itself before Kamailio's http timeout fires.
    decision_deadline_ms: int = 800
    # The most decisions one process works on at once; above its limit, 503 at
    # once. The limit itself follows latency below this ceiling
    # (decide/capacity.py). Past its capacity a process would otherwise queue
    # work it finishes after the deadline, its Redis calls would time out on its
    # own busy loop, and each would fall back to the database (make bench saw the
    # edge not recover).
    max_inflight_decisions: int = 1024
    # `serve` processes sharing the port (SO_REUSEPORT); 0 = half the cores, at
    # least one: Kamailio, Redis and the kernel need the rest of an edge host
    # (docs/operations.md, "Workers"). Only the first runs the background jobs.
    workers: int = 0
    redis_timeout_ms: int = 250
    db_timeout_ms: int = 500
    db_pool_min: int = 1
    db_pool_max: int = 10
    max_body_bytes: int = 8192
    # A batch of call reports (POST /v1/events/calls): Kamailio sends up to 50,
    # an answer report with its SDP is under 3 KiB.
    max_batch_bytes: int = 1_048_576
    # A rate deck uploaded to the admin API (spooled to a temporary file, then imported
    # as import-rates does): a million-prefix deck is about 40 MB.
    max_deck_bytes: int = 536_870_912
    # Shared secret Kamailio sends as "Authorization: Bearer ..." on /v1/*;
    # empty = no check, which `serve` allows on a loopback address only: the
    # lookups hand out HA1 digests (check_exposure).
    api_token: str = ""
    # Longer than libcurl's 118 s idle reuse, so Kamailio never hits a closed socket.
    keepalive_timeout_s: float = 125.0
    # Channel leases (docs/api.md, "Admission"): an admitted call whose start
    # report never comes lapses after lease_pending_s; a started one after
    # lease_ringing_s (longer than Kamailio's FR_INV_TIMER, 120 s); an answered
    # one after max_call_s (longer than Kamailio's MAX_CALL_S, 4 h).
    lease_pending_s: float = 10.0
    lease_ringing_s: float = 180.0
    max_call_s: float = 14460.0
    # After Redis lost its data, the channel counts last saved in the database
    # come back as placeholder leases lapsing one by one over this window: calls
    # still up keep counting, and capacity returns gradually instead of all at
    # once (docs/operations.md, "Redis restarts"). About a typical call's length.
    restored_leases_s: float = 300.0
    # Write-back: drain queued reports into the database, sync channel counts,
    # mark lapsed registrations offline (in `serve` unless disabled).
    writeback_enabled: bool = True
    channels_sync_s: float = 5.0
    sweep_interval_s: float = 30.0
    drain_batch: int = 200
    drain_backoff_max_s: float = 30.0
    # /ready turns unready when reports wait and the drainer has had no good round
    # for this long (above the backoff, so one database blip does not flap it).
    drain_stall_s: float = 60.0
    # CDR rating: first billed block and the increment after it (6/6 by default).
    billing_minimum_s: int = 6
    billing_increment_s: int = 6
    # Gateway health (docs/routing-health.md): carrier failures in a row (408,
    # 5xx) that open a gateway's breaker, and how long it stays open before a
    # call may try it again (sooner if Kamailio's OPTIONS probe sees it answer).
    gateway_fail_threshold: int = 5
    gateway_open_s: float = 30.0
    # Carrier quality: the window summaries cover, the attempts below which a
    # carrier is not judged, and the floors of the quality_floor strategy.
    quality_window_s: int = 900
    quality_min_calls: int = 20
    quality_asr_floor: float = 0.3
    quality_failure_ceiling: float = 0.5
    # Credit control: how often balances are read from billing_accounts (a
    # top-up counts within this), and how long past its maximum duration an
    # unsettled call keeps its hold (its CDR settles it long before; this only
    # frees a hold whose call was lost with its reports).
    credit_refresh_s: float = 5.0
    credit_hold_grace_s: float = 3600.0
    log_level: str = "info"
    log_format: str = "json"
    access_log: bool = False

    def breaker_config(self) -> BreakerConfig:
        return BreakerConfig(self.gateway_fail_threshold, int(self.gateway_open_s * 1000))

    def quality_config(self) -> QualityConfig:
        return QualityConfig(
            window_s=self.quality_window_s,
            min_calls=self.quality_min_calls,
            asr_floor=self.quality_asr_floor,
            failure_ceiling=self.quality_failure_ceiling,
        )

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """SIPDATA_REDIS_SENTINELS as (host, port) pairs (empty: no Sentinel)."""
        out = []
        for item in filter(None, (i.strip() for i in self.redis_sentinels.split(","))):
            host, sep, port = item.rpartition(":")
            _check(
                bool(sep and host and port.isascii() and port.isdigit())
                and 1 <= int(port) <= 65535,
                "SIPDATA_REDIS_SENTINELS",
                f"entry {item!r} is not host:port",
            )
            out.append((host.strip("[]"), int(port)))
        return out

    def serve_workers(self) -> int:
        """How many `serve` processes: SIPDATA_WORKERS, or half the cores (at least 1)."""
        return self.workers or max(1, (os.cpu_count() or 2) // 2)

    def child_env(self) -> dict[str, str]:
        """This process's environment with these settings in it: what a child process
        of sipdata (the follower's full load) runs with."""
        return {**os.environ, **self.to_env()}

    def to_env(self) -> dict[str, str]:
        """The SIPDATA_* variables `from_env` reads back as these settings."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[PREFIX + f.name.upper()] = (
                    str(value).lower() if isinstance(value, bool) else str(value)
                )
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            raw = source.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(name, raw, _PARSERS[f.type if isinstance(f.type, str) else ""])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject combinations that would break the service at run time."""
        _check(1 <= self.http_port <= 65535, "SIPDATA_HTTP_PORT", "must be 1..65535")
        _check(
            urlsplit(self.database_url).scheme in {"postgresql", "postgres"},
            "SIPDATA_DATABASE_URL",
            "must be a postgresql:// URL",
        )
        _check(
            urlsplit(self.redis_url).scheme in {"redis", "rediss", "unix"},
            "SIPDATA_REDIS_URL",
            "must be a redis:// URL",
        )
        self.sentinel_addresses()
        _check(
            bool(self.redis_sentinel_service.strip()),
            "SIPDATA_REDIS_SENTINEL_SERVICE",
            "must name the primary the sentinels monitor",
        )
        _check(0 <= self.redis_replicas_ack <= 16, "SIPDATA_REDIS_REPLICAS_ACK", "must be 0..16")
        _check(self.redis_replicas_wait_ms > 0, "SIPDATA_REDIS_REPLICAS_WAIT_MS", "must be > 0")
        _check(self.warm_interval_s >= 0, "SIPDATA_WARM_INTERVAL_S", "must be >= 0 (0: never)")
        _check(self.change_poll_s > 0, "SIPDATA_CHANGE_POLL_S", "must be > 0")
        _check(self.change_batch >= 1, "SIPDATA_CHANGE_BATCH", "must be >= 1")
        _check(self.catalog_refresh_s > 0, "SIPDATA_CATALOG_REFRESH_S", "must be > 0")
        _check(
            self.generation_grace_s > self.catalog_refresh_s * 5,
            "SIPDATA_GENERATION_GRACE_S",
            "must be well above SIPDATA_CATALOG_REFRESH_S",
        )
        _check(self.readthrough_ttl_s > 0, "SIPDATA_READTHROUGH_TTL_S", "must be > 0")
        _check(self.negative_ttl_s > 0, "SIPDATA_NEGATIVE_TTL_S", "must be > 0")
        _check(self.decision_deadline_ms > 0, "SIPDATA_DECISION_DEADLINE_MS", "must be > 0")
        _check(self.redis_timeout_ms > 0, "SIPDATA_REDIS_TIMEOUT_MS", "must be > 0")
        _check(self.db_timeout_ms > 0, "SIPDATA_DB_TIMEOUT_MS", "must be > 0")
        _check(1 <= self.db_pool_min <= self.db_pool_max, "SIPDATA_DB_POOL_MIN", "must be 1..max")
        _check(self.max_body_bytes >= 256, "SIPDATA_MAX_BODY_BYTES", "must be >= 256")
        _check(self.max_deck_bytes >= 1024, "SIPDATA_MAX_DECK_BYTES", "must be >= 1024")
        _check(self.max_inflight_decisions >= 1, "SIPDATA_MAX_INFLIGHT_DECISIONS", "must be >= 1")
        _check(0 <= self.workers <= 256, "SIPDATA_WORKERS", "must be 0..256 (0: half the cores)")
        _check(
            self.max_batch_bytes >= self.max_body_bytes,
            "SIPDATA_MAX_BATCH_BYTES",
            "must be >= SIPDATA_MAX_BODY_BYTES",
        )
        _check(self.keepalive_timeout_s > 0, "SIPDATA_KEEPALIVE_TIMEOUT_S", "must be > 0")
        _check(
            0 < self.lease_pending_s <= self.lease_ringing_s <= self.max_call_s,
            "SIPDATA_LEASE_PENDING_S",
            "must be > 0 and <= SIPDATA_LEASE_RINGING_S <= SIPDATA_MAX_CALL_S",
        )
        _check(self.restored_leases_s > 0, "SIPDATA_RESTORED_LEASES_S", "must be > 0")
        _check(self.channels_sync_s > 0, "SIPDATA_CHANNELS_SYNC_S", "must be > 0")
        _check(self.sweep_interval_s > 0, "SIPDATA_SWEEP_INTERVAL_S", "must be > 0")
        _check(self.drain_batch >= 1, "SIPDATA_DRAIN_BATCH", "must be >= 1")
        _check(self.drain_backoff_max_s > 0, "SIPDATA_DRAIN_BACKOFF_MAX_S", "must be > 0")
        _check(self.drain_stall_s > 0, "SIPDATA_DRAIN_STALL_S", "must be > 0")
        _check(self.billing_minimum_s >= 0, "SIPDATA_BILLING_MINIMUM_S", "must be >= 0")
        _check(self.billing_increment_s >= 1, "SIPDATA_BILLING_INCREMENT_S", "must be >= 1")
        _check(self.gateway_fail_threshold >= 1, "SIPDATA_GATEWAY_FAIL_THRESHOLD", "must be >= 1")
        _check(self.gateway_open_s > 0, "SIPDATA_GATEWAY_OPEN_S", "must be > 0")
        _check(self.quality_window_s >= 60, "SIPDATA_QUALITY_WINDOW_S", "must be >= 60")
        _check(self.quality_min_calls >= 1, "SIPDATA_QUALITY_MIN_CALLS", "must be >= 1")
        _check(0 <= self.quality_asr_floor <= 1, "SIPDATA_QUALITY_ASR_FLOOR", "must be 0..1")
        _check(
            0 <= self.quality_failure_ceiling <= 1,
            "SIPDATA_QUALITY_FAILURE_CEILING",
            "must be 0..1",
        )
        _check(self.credit_refresh_s > 0, "SIPDATA_CREDIT_REFRESH_S", "must be > 0")
        _check(self.credit_hold_grace_s > 0, "SIPDATA_CREDIT_HOLD_GRACE_S", "must be > 0")
        _check(
            self.log_level in {"debug", "info", "warning", "error"},
            "SIPDATA_LOG_LEVEL",
            "must be debug|info|warning|error",
        )
        _check(self.log_format in {"json", "console"}, "SIPDATA_LOG_FORMAT", "must be json|console")
        _check(bool(self.realm) and ":" not in self.realm, "SIPDATA_REALM", "must be a domain")

    def check_exposure(self) -> None:
        """`serve` on an address other hosts reach needs the shared secret: without
        it /v1/credentials gives anyone the HA1 digests of every trunk."""
        if self.api_token or _loopback(self.http_host):
            return
        raise ConfigError(
            f"SIPDATA_HTTP_HOST={self.http_host} is reachable from other hosts and "
            "SIPDATA_API_TOKEN is empty: set SIPDATA_API_TOKEN (Kamailio's SIPDATA_SECRET) "
            "or bind to 127.0.0.1",
            field="SIPDATA_API_TOKEN",
        )


def _loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one ("" and 0.0.0.0 are all
    interfaces; a name counts by what it resolves to)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _check(ok: bool, name: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{name} {why}", field=name)


def _parse(name: str, raw: str, parser: Callable[[str], T]) -> T:
    try:
        return parser(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is invalid: {exc}", field=name) from None


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": _bool,
}
