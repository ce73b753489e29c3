"""A carrier gateway's circuit breaker: closed, open, half-open, from probes and call outcomes.

Events (`EVENTS`) come from Kamailio: its OPTIONS keepalive reports a gateway
going down or up; each failed branch of a call reports its code (a timeout is
408), and an answered call is a success. The rules:

* closed: `fail_threshold` carrier failures in a row (408, 5xx) open it; any
  other outcome (an answer, a 486, a 404: the gateway answered) resets the count;
  a probe that fails opens it at once.
* open: left out of routes. After `open_ms` it is half-open by itself (a probe
  that never comes back must not keep a carrier out for ever); a probe that
  answers makes it half-open at once.
* half-open: offered again in its place. The first outcome decides: a success
  closes it, a failure (or a failed probe) opens it for another `open_ms`.

The stored form is one short string per gateway, "state failures opened_ms"
(`pack`/`unpack`), which `cache/scripts/gateway_event.lua` steps exactly like
`step` does (tests/unit/test_breaker.py holds the two together). A closed
gateway with no failures is not stored at all, so the hash every decision reads
holds only the gateways worth knowing about.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
EVENTS = ("probe_up", "probe_down", "ok", "fail")
# Replies that are the carrier's failure, as Kamailio's FAILOVER_CODES: every
# other final reply shows the gateway alive and answering.
_FAILURE_CLASS = 5


def is_failure(code: int) -> bool:
    """A branch outcome that counts against the gateway (408 = no answer in time)."""
    return code == 408 or code // 100 == _FAILURE_CLASS


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    fail_threshold: int = 5
    open_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class Breaker:
    state: str = CLOSED  # as stored: closed | open | half_open
    failures: int = 0  # carrier failures in a row while closed
    opened_ms: int = 0  # when it last opened

    def effective(self, now_ms: int, config: BreakerConfig) -> str:
        """The state a decision acts on: an open breaker turns half-open with time."""
        if self.state == OPEN and now_ms >= self.opened_ms + config.open_ms:
            return HALF_OPEN
        return self.state


def step(b: Breaker, event: str, now_ms: int, config: BreakerConfig) -> Breaker:
    """The breaker after one event."""
    state = b.effective(now_ms, config)
    if event == "probe_down":
        return Breaker(OPEN, 0, now_ms)
    if event == "probe_up":
        return Breaker(HALF_OPEN, 0, b.opened_ms) if state == OPEN else b
    if event == "ok":
        return Breaker()
    if event != "fail":
        raise ValueError(f"unknown breaker event {event!r}")
    if state == HALF_OPEN:
        return Breaker(OPEN, 0, now_ms)
    if state == OPEN:
        return b
    failures = b.failures + 1
    if failures >= config.fail_threshold:
        return Breaker(OPEN, 0, now_ms)
    return Breaker(CLOSED, failures, b.opened_ms)


def pack(b: Breaker) -> str | None:
    """The stored form; None = nothing to store (closed, no failures)."""
    if b.state == CLOSED and b.failures == 0:
        return None
    return f"{b.state} {b.failures} {b.opened_ms}"


def unpack(text: str | bytes | None) -> Breaker:
    """A stored breaker; anything unreadable is a closed one (never keep a carrier out
    on a value this version cannot read)."""
    if text is None:
        return Breaker()
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    parts = text.split()
    if len(parts) != 3 or parts[0] not in (CLOSED, OPEN, HALF_OPEN):
        return Breaker()
    try:
        return Breaker(parts[0], int(parts[1]), int(parts[2]))
    except ValueError:
        return Breaker()


def gateway_key(uri_or_address: str) -> str:
    """One name per gateway, whichever way it is written: a route's URI
    (sip:number@host:port;transport=tcp), keepalive's (sip:host:port), or a stored
    address (host, host:port, [v6]:port). Lower-case host and an explicit port
    (5060; 5061 for sips: or transport=tls)."""
    text = uri_or_address.strip()
    tls = False
    lowered = text.lower()
    for scheme in ("sips:", "sip:"):
        if lowered.startswith(scheme):
            tls = scheme == "sips:"
            text = text[len(scheme) :]
            break
    head, _, params = text.partition(";")
    if "transport=tls" in params.lower():
        tls = True
    hostport = head.rsplit("@", 1)[-1].split("?", 1)[0]
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        host = f"[{host.lower()}]"
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
        host = host.lower()
    else:
        host, port = hostport.lower(), ""
    if not (port.isascii() and port.isdigit()):  # '²' is a digit to isdigit
        port = "5061" if tls else "5060"
    return f"{host}:{int(port)}"
