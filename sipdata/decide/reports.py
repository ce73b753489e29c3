"""Reports from Kamailio (registrations, call events): validated into typed values.

A report is accepted or refused whole: a refused one names its field and
changes nothing. Timestamps are Kamailio's (`$TV(Sn)`, seconds since the
epoch with microseconds), so ordering and durations do not depend on when a
report happened to reach sipdata.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sipdata.decide import acl
from sipdata.decide.models import is_uuid
from sipdata.errors import InputError

# attempt: one branch of the call failed (its gateway and code), before the
# next destination is tried; it feeds the gateway's breaker and its carrier's
# quality, and moves the lease like start does.
CALL_EVENTS = ("start", "answer", "end", "fail", "attempt")
# Why an answered call ended (docs/api.md); stored as cdrs.termination_cause.
CAUSES = ("caller_bye", "callee_bye", "timeout", "normal_clearing")
MAX_EXPIRES = 7 * 24 * 3600
MAX_SDP = 4096
_MAX_TEXT = 256
# cdrs.call_id is VARCHAR(255): a longer Call-ID is refused here (and by the
# decision), before it is acknowledged, never by the database afterwards.
MAX_CALL_ID = 255
# 2001-09-09 .. 2286: a Kamailio clock outside this is broken, not a report.
_TS_RANGE = (1e9, 1e10)
# Static RTP payload types (RFC 3551) that an SDP may use without an rtpmap.
_STATIC_PT = {0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 18: "G729"}
# Control characters a report's text may not hold; CR, LF and TAB are checked on
# their own (an SDP has line breaks). A regex, not a test per character: an
# answer report carries up to 2 KiB of SDP (py-spy: 4.5 % of serve under SIP load).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_LINE_BREAK = re.compile(r"[\r\n]")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([^/\s]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RegistrationReport:
    """One REGISTER Kamailio verified: expires 0 means the binding is gone."""

    username: str
    contact: str
    received: str | None
    source_ip: str
    user_agent: str | None
    expires: int
    call_id: str
    cseq: int
    ts: dt.datetime

    @property
    def online(self) -> bool:
        return self.expires > 0 and self.contact != "*"

    @property
    def expires_at(self) -> dt.datetime:
        return self.ts + dt.timedelta(seconds=self.expires if self.online else 0)

    def to_json(self) -> dict[str, Any]:
        """The report as Kamailio sent it (registration_report reads it back)."""
        return {
            "username": self.username,
            "contact": self.contact,
            "received": self.received,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "expires": self.expires,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "ts": self.ts.timestamp(),
        }


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One dialog event; every field a CDR needs travels with each event."""

    event: str
    call_id: str
    ts: dt.datetime
    trunk_id: str | None
    org_id: str | None
    source_ip: str | None
    destination_ip: str | None
    from_user: str | None
    to_user: str | None
    invite_ts: dt.datetime | None
    answer_ts: dt.datetime | None
    sip_code: int | None
    sip_reason: str | None
    cause: str | None
    codecs: tuple[str, ...]
    # Which destination (a sip: URI; for an answer, the address it came from),
    # when its branch was sent and when it first rang (PDD: docs/routing-health.md).
    gateway: str | None = None
    branch_ts: dt.datetime | None = None
    ring_ts: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def stamp(v: dt.datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {
            "event": self.event,
            "call_id": self.call_id,
            "ts": stamp(self.ts),
            "trunk_id": self.trunk_id,
            "org_id": self.org_id,
            "source_ip": self.source_ip,
            "destination_ip": self.destination_ip,
            "from": self.from_user,
            "to": self.to_user,
            "invite_ts": stamp(self.invite_ts),
            "answer_ts": stamp(self.answer_ts),
            "sip_code": self.sip_code,
            "sip_reason": self.sip_reason,
            "cause": self.cause,
            "codecs": list(self.codecs),
            "gateway": self.gateway,
            "branch_ts": stamp(self.branch_ts),
            "ring_ts": stamp(self.ring_ts),
        }


def _text(
    doc: Mapping[str, Any], name: str, *, required: bool = False, limit: int = _MAX_TEXT
) -> str | None:
    value = doc.get(name)
    # Kamailio prints an unset variable as "<null>": the same as absent.
    if value is None or value in ("", "<null>"):
        if required:
            raise InputError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string", field=name)
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters", field=name)
    if _CONTROL.search(value) or (limit <= _MAX_TEXT and _LINE_BREAK.search(value)):
        raise InputError(f"{name} contains control characters", field=name)
    return value


def _int(
    doc: Mapping[str, Any], name: str, lo: int, hi: int, *, required: bool = False
) -> int | None:
    value = doc.get(name)
    if value is None or value == "<null>":
        if required:
            raise InputError(f"{name} is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(f"{name} must be an integer", field=name)
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"{name} must be an integer", field=name) from None
    if not lo <= number <= hi:
        raise InputError(f"{name} must be {lo}..{hi}", field=name)
    return number


def _ts(doc: Mapping[str, Any], name: str, *, required: bool = False) -> dt.datetime | None:
    value = doc.get(name)
    if value is None or value in ("", "<null>"):
        if required:
            raise InputError(f"{name} is required", field=name)
        return None
    if isinstance(value, bool):
        raise InputError(f"{name} must be seconds since the epoch", field=name)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be seconds since the epoch", field=name) from None
    if not math.isfinite(seconds) or not _TS_RANGE[0] <= seconds <= _TS_RANGE[1]:
        raise InputError(f"{name} is not a plausible time", field=name)
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _choice(doc: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    value = _text(doc, name)
    if value is not None and value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}", field=name)
    return value


def _ip(doc: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = _text(doc, name, required=required)
    return None if value is None else str(acl.canonical_ip(value, name))


def _uuid(doc: Mapping[str, Any], name: str) -> str | None:
    value = _text(doc, name)
    if value is not None and not is_uuid(value):
        raise InputError(f"{name} must be a UUID", field=name)
    return value


def _sip_uri(doc: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = _text(doc, name, required=required)
    if value is not None and value != "*" and not value.lower().startswith(("sip:", "sips:")):
        raise InputError(f"{name} must be a sip: or sips: URI", field=name)
    return value


def registration_report(doc: Mapping[str, Any]) -> RegistrationReport:
    contact = _sip_uri(doc, "contact", required=True)
    expires = _int(doc, "expires", 0, MAX_EXPIRES, required=True)
    ts = _ts(doc, "ts", required=True)
    assert contact is not None and expires is not None and ts is not None
    if contact == "*" and expires != 0:
        raise InputError("contact * is only valid with expires 0", field="contact")
    source_ip = _ip(doc, "source_ip", required=True)
    assert source_ip is not None
    return RegistrationReport(
        username=_text(doc, "username", required=True) or "",
        contact=contact,
        received=_sip_uri(doc, "received"),
        source_ip=source_ip,
        user_agent=_text(doc, "user_agent"),
        expires=expires,
        call_id=_text(doc, "call_id", required=True, limit=MAX_CALL_ID) or "",
        cseq=_int(doc, "cseq", 0, 2**31 - 1) or 0,
        ts=ts,
    )


def call_event(doc: Mapping[str, Any]) -> CallEvent:
    event = _text(doc, "event", required=True)
    if event not in CALL_EVENTS:
        raise InputError(f"event must be one of {', '.join(CALL_EVENTS)}", field="event")
    ts = _ts(doc, "ts", required=True)
    assert ts is not None
    sdp = _text(doc, "sdp", limit=MAX_SDP)
    return CallEvent(
        event=event,
        call_id=_text(doc, "call_id", required=True, limit=MAX_CALL_ID) or "",
        ts=ts,
        trunk_id=_uuid(doc, "trunk_id"),
        org_id=_uuid(doc, "org_id"),
        source_ip=_ip(doc, "source_ip"),
        destination_ip=_ip(doc, "destination_ip"),
        from_user=_text(doc, "from"),
        to_user=_text(doc, "to"),
        invite_ts=_ts(doc, "invite_ts"),
        answer_ts=_ts(doc, "answer_ts"),
        sip_code=_int(doc, "sip_code", 100, 699),
        sip_reason=_text(doc, "sip_reason"),
        cause=_choice(doc, "cause", CAUSES),
        codecs=codecs(sdp) if sdp else (),
        gateway=_sip_uri(doc, "gateway"),
        branch_ts=_ts(doc, "branch_ts"),
        ring_ts=_ts(doc, "ring_ts"),
    )


def gateway_report(doc: Mapping[str, Any]) -> tuple[str, str]:
    """Kamailio's keepalive saw a gateway change state: (gateway URI, probe_up|probe_down)."""
    gateway = _sip_uri(doc, "gateway", required=True)
    state = _choice(doc, "state", ("up", "down"))
    if state is None:
        raise InputError("state is required (up or down)", field="state")
    assert gateway is not None
    if gateway == "*":
        raise InputError("gateway must be a sip: or sips: URI", field="gateway")
    return gateway, f"probe_{state}"


def codecs(sdp: str) -> tuple[str, ...]:
    """Codec names of the first audio stream, in the SDP's order of preference."""
    payloads: list[int] = []
    names: dict[int, str] = {}
    in_audio = False
    seen_audio = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if seen_audio:
                break
            parts = line[2:].split()
            in_audio = seen_audio = bool(parts) and parts[0] == "audio"
            if in_audio:
                payloads = [int(p) for p in parts[3:] if p.isascii() and p.isdigit()]
        elif in_audio and (m := _RTPMAP.match(line)):
            names[int(m.group(1))] = m.group(2)
    return tuple(names.get(pt) or _STATIC_PT.get(pt) or str(pt) for pt in payloads)


MAX_BATCH = 500  # reports per POST /v1/events/calls (Kamailio sends up to 50)
MAX_KEY = 512


def call_batch(doc: Mapping[str, Any]) -> list[Any]:
    """The reports of a batch body `{"reports": [...]}` (each checked on its own later)."""
    items = doc.get("reports")
    if not isinstance(items, list) or not items:
        raise InputError("reports must be a non-empty list of call reports", field="reports")
    if len(items) > MAX_BATCH:
        raise InputError(f"at most {MAX_BATCH} reports per batch", field="reports")
    return items


def batch_item(item: Any, index: int) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise InputError("a report must be a JSON object", field=f"reports[{index}]")
    return item


def report_key(item: Any, index: int) -> str:
    """The key Kamailio files a batched report under, echoed in `done` or `kept` so it
    knows what to drop: required, because a report it cannot name would be sent
    again forever."""
    key = item.get("report_key") if isinstance(item, dict) else None
    field = f"reports[{index}].report_key"
    if not isinstance(key, str) or not key:
        raise InputError("report_key must be a non-empty string", field=field)
    if len(key) > MAX_KEY or any(ord(c) < 32 for c in key):
        raise InputError(f"report_key must be at most {MAX_KEY} printable characters", field=field)
    return key
