"""Report validation from Kamailio: tables of good and bad reports, and SDP codec parsing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide import reports
from sipdata.errors import InputError

TS = 1_790_000_000.25
REG: dict[str, Any] = {
    "username": "acme-pbx",
    "contact": "sip:acme-pbx@127.0.0.20:5070",
    "received": "sip:127.0.0.20:5070",
    "source_ip": "127.0.0.20",
    "call_id": "reg-1",
    "cseq": 2,
    "expires": 300,
    "ts": TS,
}
CALL: dict[str, Any] = {
    "event": "end",
    "call_id": "1-99@127.0.0.10",
    "ts": TS + 30,
    "trunk_id": "265b8dc8-6564-52a7-96d7-8b92c592bdb2",
    "org_id": "45518af6-98dd-538d-93c9-fd00f7fcaf85",
    "source_ip": "127.0.0.10",
    "destination_ip": "127.0.0.102",
    "from": "sipp",
    "to": "12125551234",
    "invite_ts": TS,
    "answer_ts": TS + 2,
    "cause": "caller_bye",
}


def test_registration_report_parses_times_and_expiry() -> None:
    """A registration report's time is Kamailio's, and it expires `expires` seconds after it."""
    report = reports.registration_report(REG)
    assert report.online
    assert report.ts == dt.datetime.fromtimestamp(TS, dt.UTC)
    assert report.expires_at - report.ts == dt.timedelta(seconds=300)


@pytest.mark.parametrize(
    ("contact", "expires", "online"),
    [("sip:a@h", 0, False), ("*", 0, False), ("sips:a@h", 60, True)],
)
def test_expires_zero_or_star_means_offline(contact: str, expires: int, online: bool) -> None:
    """Expires 0 or Contact * is a de-registration, expiring at once."""
    report = reports.registration_report({**REG, "contact": contact, "expires": expires})
    assert report.online is online
    if not online:
        assert report.expires_at == report.ts


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": ""}, "username"),
        ({"contact": "http://x"}, "contact"),
        ({"contact": "*", "expires": 60}, "contact"),
        ({"expires": -1}, "expires"),
        ({"expires": "soon"}, "expires"),
        ({"expires": True}, "expires"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": 12}, "ts"),
        ({"ts": float("nan")}, "ts"),
        ({"source_ip": "300.1.1.1"}, "source_ip"),
        ({"received": "127.0.0.1:5060"}, "received"),
        ({"call_id": None}, "call_id"),
        ({"user_agent": "x\r\ny"}, "user_agent"),
        ({"user_agent": "x" * 300}, "user_agent"),
    ],
)
def test_bad_registration_report_names_its_field(change: dict[str, Any], field: str) -> None:
    """A malformed registration report is refused with the offending field named."""
    with pytest.raises(InputError) as err:
        reports.registration_report({**REG, **change})
    assert err.value.field == field


def test_kamailio_null_placeholder_reads_as_absent() -> None:
    """An unset Kamailio variable prints as "<null>": the field is simply not known."""
    event = reports.call_event({**CALL, "destination_ip": "<null>", "answer_ts": "<null>"})
    assert event.destination_ip is None and event.answer_ts is None


def test_call_event_round_trips_to_json() -> None:
    """A call event's stored JSON keeps the parties and times as Kamailio reported them."""
    doc = reports.call_event(CALL).to_json()
    assert doc["event"] == "end" and doc["to"] == "12125551234"
    assert dt.datetime.fromisoformat(doc["answer_ts"]).timestamp() == TS + 2
    assert doc["codecs"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event": "ringing"}, "event"),
        ({"call_id": ""}, "call_id"),
        ({"trunk_id": "acme"}, "trunk_id"),
        ({"sip_code": 99}, "sip_code"),
        ({"sip_code": 700}, "sip_code"),
        ({"destination_ip": "gw.example"}, "destination_ip"),
        ({"sdp": "v=0\r\n" * 2000}, "sdp"),
        ({"invite_ts": []}, "invite_ts"),
    ],
)
def test_bad_call_event_names_its_field(change: dict[str, Any], field: str) -> None:
    """A malformed call event is refused with the offending field named."""
    with pytest.raises(InputError) as err:
        reports.call_event({**CALL, **change})
    assert err.value.field == field


SDP = (
    "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 18 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)


@pytest.mark.parametrize(
    ("sdp", "expected"),
    [
        (SDP, ("PCMA", "PCMU", "G729", "telephone-event")),
        ("m=audio 1 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n", ("opus",)),
        ("m=audio 1 RTP/AVP 0 97\n", ("PCMU", "97")),
        ("m=audio 1 RTP/AVP 0 \u00b2\n", ("PCMU",)),  # not an ASCII payload type: skipped
        ("m=video 1 RTP/AVP 96\na=rtpmap:96 VP8/90000\n", ()),
        ("v=0\n", ()),
    ],
)
def test_codecs_of_the_first_audio_stream(sdp: str, expected: tuple[str, ...]) -> None:
    """Codec names come from the first audio stream, in its order, static payload types by
    their RFC 3551 names."""
    assert reports.codecs(sdp) == expected


@given(st.text(max_size=500))
def test_codec_parsing_never_raises(text: str) -> None:
    """Any text as SDP yields codec names or none, never an exception."""
    result = reports.codecs(text)
    assert all(isinstance(c, str) and c for c in result)


@given(
    st.dictionaries(
        st.sampled_from([*CALL, "sdp", "sip_code"]),
        st.none() | st.text(max_size=20) | st.integers() | st.floats(),
    )
)
def test_any_call_event_is_parsed_or_refused_with_a_field(doc: dict[str, Any]) -> None:
    """Whatever arrives, the answer is a CallEvent or an InputError naming a field."""
    try:
        reports.call_event(doc)
    except InputError as err:
        assert err.field


def test_a_usable_report_key_is_returned_as_sent() -> None:
    """The key is echoed back to Kamailio exactly as it filed the report."""
    assert reports.report_key({"report_key": "abc@host:end"}, 0) == "abc@host:end"


@pytest.mark.parametrize(
    "item",
    [
        {"report_key": ""},
        {"report_key": 7},
        {"report_key": ["k"]},
        {"report_key": "k" * 513},
        {"report_key": "a\nb"},
        {},
        "not an object",
    ],
    ids=["empty", "integer", "list", "too-long", "control-char", "missing", "not-an-object"],
)
def test_a_report_key_kamailio_could_not_match_is_refused_naming_it(item: Any) -> None:
    """A report whose key cannot be echoed back would be listed in neither `done` nor
    `kept` and sent again forever: it is refused, naming reports[i].report_key."""
    with pytest.raises(InputError) as caught:
        reports.report_key(item, 3)
    assert caught.value.field == "reports[3].report_key"


@pytest.mark.parametrize("cause", reports.CAUSES)
def test_each_documented_cause_is_accepted(cause: str) -> None:
    """The documented termination causes reach the CDR unchanged."""
    assert reports.call_event({**CALL, "cause": cause}).cause == cause


@pytest.mark.parametrize("cause", ["hangup", "CALLER_BYE", "x" * 40, "normal clearing"])
def test_an_undocumented_cause_is_refused(cause: str) -> None:
    """termination_cause holds only the documented values, never whatever was sent."""
    with pytest.raises(InputError) as caught:
        reports.call_event({**CALL, "cause": cause})
    assert caught.value.field == "cause"


@pytest.mark.parametrize(
    "doc", [{}, {"reports": []}, {"reports": "x"}, {"reports": [{}] * (reports.MAX_BATCH + 1)}]
)
def test_a_body_that_is_not_a_batch_names_the_reports_field(doc: dict[str, Any]) -> None:
    """A batch body that is not 1..500 reports is refused naming `reports`."""
    with pytest.raises(InputError) as caught:
        reports.call_batch(doc)
    assert caught.value.field == "reports"
