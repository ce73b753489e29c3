"""Prometheus metrics of one sipdata process (own registry, so tests can build many apps)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Children by label values: `labels()` takes a lock and builds its key on
        # every call, a measurable share of a decision (bench/ profile).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter(
            "sipdata_http_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "sipdata_http_request_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lookups = Counter(
            "sipdata_cache_lookups",
            "Lookups by data kind and where the answer came from "
            "(generation = warmer snapshot hit, readthrough = cached database answer, "
            "database = read through on a miss)",
            ["kind", "source"],
            registry=r,
        )
        self.degraded = Counter(
            "sipdata_degraded",
            "Failures met while answering: a Redis call that failed (the answer then came "
            "from the database), or a request past its deadline",
            ["reason"],
            registry=r,
        )
        self.warm_last_success = Gauge(
            "sipdata_warmer_last_success_timestamp_seconds",
            "Unix time of the last full load",
            registry=r,
        )
        self.warm_duration = Gauge(
            "sipdata_warmer_last_duration_seconds", "Duration of the last full load", registry=r
        )
        self.warm_failures = Counter(
            "sipdata_warmer_failures", "Full loads that failed", registry=r
        )
        self.change_lag = Gauge(
            "sipdata_change_lag_seconds",
            "Age of the oldest change the follower applied in its last round (commit to "
            "Redis; processes see it one catalog refresh later); 0 when none waited",
            registry=r,
        )
        self.changes_applied = Counter(
            "sipdata_changes_applied", "Captured database changes applied to Redis", registry=r
        )
        self.change_entries = Counter(
            "sipdata_change_entries",
            "Serving entries rewritten or deleted by the follower's patches",
            registry=r,
        )
        self.follow_errors = Counter(
            "sipdata_follow_errors", "Follower rounds that failed (retried)", registry=r
        )
        self.generation = Gauge(
            "sipdata_generation", "Serving generation this process reads", registry=r
        )
        self.db_retries = Counter(
            "sipdata_db_retries",
            "Write transactions retried after a serialization failure (SQLSTATE 40001)",
            registry=r,
        )
        self.admissions = Counter(
            "sipdata_admissions",
            "Admission outcomes of routed calls (ok, dup, trunk, org, rule, rate, unchecked)",
            ["outcome"],
            registry=r,
        )
        self.credit = Counter(
            "sipdata_credit_holds",
            "Credit holds of controlled orgs' calls (ok, dup, funds, unknown)",
            ["outcome"],
            registry=r,
        )
        self.gateway_events = Counter(
            "sipdata_gateway_events",
            "Gateway breaker events from Kamailio (probe_up, probe_down, ok, fail)",
            ["event"],
            registry=r,
        )
        # Written by the drainer as it summarises reports (jobs/outcomes.py).
        self.carrier_quality = Gauge(
            "sipdata_carrier_quality",
            "Carrier quality over the window (asr, acd_s, pdd_ms, failure_ratio, attempts)",
            ["carrier_id", "prefix", "measure"],
            registry=r,
        )
        self.gateway_state = Gauge(
            "sipdata_gateway_open",
            "1 while a gateway's breaker is open (0 half-open), as this node last saw it",
            ["gateway"],
            registry=r,
        )
        self.drained = Counter(
            "sipdata_drained",
            "Queued reports written to the database, by stream and outcome",
            ["stream", "outcome"],
            registry=r,
        )
        self.backlog = Gauge(
            "sipdata_drain_backlog", "Entries waiting in a report stream", ["stream"], registry=r
        )
        self.drain_errors = Counter(
            "sipdata_drain_errors",
            "Drain rounds that failed, by cause (redis, database, group_lost, unexpected)",
            ["kind"],
            registry=r,
        )
        # Set by the decision service (set_function): decide/capacity.py.
        self.decision_limit = Gauge(
            "sipdata_decision_limit",
            "Decisions this process takes on at once now (it follows their latency)",
            registry=r,
        )
        self.decisions_inflight = Gauge(
            "sipdata_decisions_in_flight", "Decisions being answered now", registry=r
        )
        # Set by the drainer (set_function): about 1 s while it works or idles; it grows
        # while rounds fail or the loop is stuck. Alert on it with a backlog above 0.
        self.drain_quiet = Gauge(
            "sipdata_drain_seconds_since_good_round",
            "Seconds since the drainer last finished a round without an error",
            registry=r,
        )

    def _child(self, metric: Counter | Histogram, labels: tuple[str, ...]) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def inc(self, counter: Counter, *labels: str) -> None:
        """`counter.labels(*labels).inc()`, the child looked up once."""
        self._child(counter, labels).inc()

    def observe(self, histogram: Histogram, value: float, *labels: str) -> None:
        self._child(histogram, labels).observe(value)
