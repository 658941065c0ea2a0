import base64
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import fastavro
import orjson
import pytest

from router.envelope import codec, decode, new_event
from router.errors import DecodeError, EventValidationError

V2 = fastavro.parse_schema(json.loads((Path(__file__).parents[1] / "fixtures" / "event.v2.avsc").read_text()))
LIMIT = 1024 * 1024


def sample(**kw):
    return new_event("user.provisioned", {"name": "Alice", "department": "Finance"}, tenant="acme",
                     source="workflow/provisioning", max_bytes=LIMIT, **kw)


def test_event_round_trip_keeps_every_attribute():
    event = sample(subject="alice", causationid="c-1")
    decoded = decode(codec.encode_event(event), None, LIMIT)
    assert decoded.event == event
    assert decoded.mode == "avro"
    assert decoded.event.correlationid == event.id  # a chain starts at its first event


def test_trigger_embeds_the_event_bytes_as_they_came():
    event = sample()
    decoded = decode(codec.encode_event(event), None, LIMIT)
    value = codec.encode_trigger_from_body(decoded.body, subscription="s", tenant="acme", workflow="w",
                                           routed_at=datetime.now(timezone.utc), idempotency_key="k",
                                           source_topic="events.user", source_partition=2, source_offset=7)
    trigger = codec.decode_trigger(value)
    assert trigger["event"] == event
    assert (trigger["subscription"], trigger["source_partition"], trigger["source_offset"]) == ("s", 2, 7)


def _v2_bytes(event) -> bytes:
    record = codec.event_record(event) | {"hops": 3, "traceparent": "00-abc-def-01"}
    buf = io.BytesIO()
    buf.write(codec.HEADER.pack(codec.MAGIC, 2))
    fastavro.schemaless_writer(buf, V2, record)
    return buf.getvalue()


def test_old_reader_reads_new_records(monkeypatch):
    """A v1 reader that knows the v2 writer schema projects v2 records onto v1: new fields are dropped."""
    event = sample()
    value = _v2_bytes(event)
    with pytest.raises(DecodeError, match="unknown-schema"):
        codec.decode_event(value)  # not known yet: an error the router dead-letters, never a crash
    monkeypatch.setitem(codec.WRITERS["event"], 2, V2)
    assert codec.decode_event(value) == event
    decoded = decode(value, None, LIMIT)  # and the router forwards it in v1
    assert codec.decode_event(codec.HEADER.pack(codec.MAGIC, 1) + bytes(decoded.body)) == event


def test_new_reader_reads_old_records():
    """A v2 reader fills the fields v1 did not have with their defaults."""
    event = sample()
    body = codec.encode_event(event)[codec.HEADER.size:]
    record = fastavro.schemaless_reader(io.BytesIO(body), codec.EVENT_SCHEMA, V2)
    assert record["hops"] == 0 and record["traceparent"] is None
    assert record["id"] == event.id and record["data"] == event.data


def test_every_schema_field_added_after_v1_needs_a_default():
    v1 = {f["name"] for f in json.loads((codec.SCHEMAS / "event.v1.avsc").read_text())["fields"]}
    for field in json.loads((Path(__file__).parents[1] / "fixtures" / "event.v2.avsc").read_text())["fields"]:
        assert field["name"] in v1 or "default" in field, field["name"]


def headers(**attrs):
    return [(f"ce_{k}", v.encode()) for k, v in attrs.items()]


CE = dict(specversion="1.0", id="ext-1", source="https://psa.example/tickets", type="ticket.closed", tenant="acme")


def test_binary_mode():
    value = orjson.dumps({"ticket": 42})
    decoded = decode(value, headers(**CE, time="2026-03-04T05:06:07Z") + [("content-type", b"application/json")],
                     LIMIT)
    assert decoded.mode == "binary"
    e = decoded.event
    assert (e.id, e.type, e.tenant, e.source) == ("ext-1", "ticket.closed", "acme", "https://psa.example/tickets")
    assert e.time == datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert e.payload() == {"ticket": 42}
    assert codec.decode_event(codec.HEADER.pack(codec.MAGIC, 1) + bytes(decoded.body)) == e


def test_structured_mode_with_data_and_data_base64():
    doc = {**CE, "data": {"ticket": 42}, "subject": "t-42"}
    ctype = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    decoded = decode(orjson.dumps(doc), ctype, LIMIT)
    assert decoded.mode == "structured"
    assert decoded.event.payload() == {"ticket": 42} and decoded.event.subject == "t-42"
    doc = {**CE, "data_base64": base64.b64encode(b'{"ticket": 43}').decode()}
    assert decode(orjson.dumps(doc), ctype, LIMIT).event.payload() == {"ticket": 43}


@pytest.mark.parametrize("value,hdrs,reason", [
    (b"\x17garbage\xff", None, "bad-frame"),
    (None, None, "empty-value"),
    (codec.HEADER.pack(codec.MAGIC, 1) + b"\x02\x00", None, "bad-avro"),
    (codec.HEADER.pack(codec.MAGIC, 9) + b"\x00", None, "unknown-schema"),
    (b"{not json", headers(**CE), "invalid-json"),
    (b"{}", headers(**{k: v for k, v in CE.items() if k != "tenant"}), "missing-tenant"),
    (b"{}", headers(**{k: v for k, v in CE.items() if k != "type"}), "missing-type"),
    (b"{}", headers(**{k: v for k, v in CE.items() if k != "id"}), "missing-id"),
    (b"{}", headers(**(CE | {"type": "Ticket Closed"})), "invalid-attribute"),
    (b"{}", headers(**(CE | {"time": "yesterday"})), "invalid-attribute"),
    (b"{}", headers(**(CE | {"specversion": "0.3"})), "invalid-attribute"),
    (b"<xml/>", headers(**CE) + [("content-type", b"application/xml")], "unsupported-content-type"),
    (b"[1,2]", [("content-type", b"application/cloudevents+json")], "invalid-json"),
    (orjson.dumps({"id": "x", "source": "s", "specversion": "1.0", "tenant": "acme", "data": {}}),
     [("content-type", b"application/cloudevents+json")], "missing-type"),
    (b"x" * 2000, None, "oversized"),
])
def test_bad_records_raise_decode_error_with_reason(value, hdrs, reason):
    with pytest.raises(DecodeError) as err:
        decode(value, hdrs, 1000)
    assert err.value.reason == reason


def test_wrong_schema_is_bad_avro():
    """A record framed as ours but written with another schema (a subscription, say) does not pass."""
    sub = codec._write(codec.WRITERS["subscription"][1], V1_SUBSCRIPTION)  # framed as version 1, like events
    with pytest.raises(DecodeError) as err:
        decode(sub, None, LIMIT)
    assert err.value.reason in ("bad-avro", "invalid-attribute")


V1_SUBSCRIPTION = {"name": "n", "tenant": "t", "workflow": "w", "patterns": ["a.b"], "filter": None,
                   "enabled": True, "updated_at": datetime.now(timezone.utc)}


def test_v1_subscription_reads_with_the_v2_delivery_defaults():
    old = codec._write(codec.WRITERS["subscription"][1], V1_SUBSCRIPTION)
    record = codec.decode_subscription(old)
    assert (record["paused"], record["recursion"], record["max_attempts"], record["max_age_s"]) == (False, 0, 5, 86400)
    new = codec.decode_subscription(codec.encode_subscription({**V1_SUBSCRIPTION, "paused": True, "recursion": 2,
                                                               "max_attempts": 3, "max_age_s": 60}))
    assert (new["paused"], new["recursion"], new["max_attempts"], new["max_age_s"]) == (True, 2, 3, 60)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(event_type="User.Provisioned"), "lowercase dot-separated"),
    (dict(event_type="provisioned"), "at least two segments"),
    (dict(tenant=""), "tenant is missing"),
    (dict(tenant=None), "tenant is missing"),
    (dict(data={"when": datetime.now()}), None),  # orjson serialises datetimes: accepted
    (dict(data={"x": {1, 2}}), "not JSON-serialisable"),
    (dict(data="x" * 2000), "limit is 1000"),
])
def test_publish_side_validation(kwargs, fragment):
    args = dict(event_type="user.provisioned", data={}, tenant="acme") | kwargs
    call = lambda: new_event(args["event_type"], args["data"], tenant=args["tenant"], source="s", max_bytes=1000)
    if fragment is None:
        call()
        return
    with pytest.raises(EventValidationError, match=fragment):
        call()


from hypothesis import given, strategies as st  # noqa: E402


@given(st.text(max_size=40), st.text(max_size=20), st.text(max_size=40), st.text(max_size=80),
       st.integers(-1, 2**31 - 1), st.integers(-1, 2**63 - 1),
       st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_trigger_encoding_equals_fastavro_on_the_trigger_schema(sub, tenant, workflow, key, partition, offset, when):
    when = when.replace(tzinfo=timezone.utc)
    sample_event = sample()
    body = codec.encode_event(sample_event)[codec.HEADER.size:]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, codec.TRIGGER_SCHEMA, {
        "event": codec.event_record(sample_event), "subscription": sub, "tenant": tenant, "workflow": workflow,
        "routed_at": when, "idempotency_key": key, "source_topic": "events.user", "source_partition": partition,
        "source_offset": offset})
    by_hand = codec.encode_trigger_from_body(body, subscription=sub, tenant=tenant, workflow=workflow,
                                             routed_at=when, idempotency_key=key, source_topic="events.user",
                                             source_partition=partition, source_offset=offset)
    assert by_hand == codec.FRAME + buf.getvalue()
