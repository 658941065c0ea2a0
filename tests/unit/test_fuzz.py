"""Bad input wherever it enters: random and mutated bytes, headers, subscriptions and filters never crash
or hang the bus; each ends in a result or the one error type that entry point documents (the router turns
it into a dead letter, the CLI and API into a message naming the problem)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from router import lineage
from router.envelope import Event, codec, decode, new_event
from router.errors import DecodeError, SubscriptionError
from router.matching import filters
from router.subscriptions.model import build

LIMIT = 64 * 1024
FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
header_names = st.sampled_from(["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_tenant", "ce_time",
                                "ce_subject", "content-type", "evbus-tenant", "evbus-hops", "evbus-chain",
                                "ce_datacontenttype", "x"])
headers = st.lists(st.tuples(header_names, st.one_of(st.none(), st.binary(max_size=40),
                                                     st.sampled_from([b"1.0", b"acme", b"a.b", b"application/json",
                                                                      b"application/cloudevents+json"]))), max_size=8)
VALID = codec.encode_event(new_event("order.placed", {"n": 1, "s": "x" * 20}, tenant="acme", source="s",
                                     max_bytes=LIMIT))


def _decode(value, hs):
    try:
        decode(value, hs, LIMIT)
    except DecodeError:
        pass


@FUZZ
@given(st.one_of(st.none(), st.binary(max_size=300)), headers)
def test_envelope_and_cloudevents_decoder_take_any_bytes(value, hs):
    _decode(value, hs)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(VALID)))
def test_mutated_valid_events_decode_or_fail_cleanly(flips, cut):
    value = bytearray(VALID)
    for at, byte in flips:
        value[at] = byte
    _decode(bytes(value[:cut] if cut > 5 else value), None)


def _outcome(read, value):
    try:
        return read(value)
    except DecodeError:
        return "error"


def _fastavro(value):
    return codec.event_from_record(codec._read("event", value))


def _python_reader(value):
    """The Python v1 reader (the router's when the C one is not built), with read_event_v1's errors."""
    try:
        return codec.read_event_py(value)
    except (ValueError, IndexError, OverflowError):
        raise DecodeError("bad-avro", "") from None


@settings(max_examples=800, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(VALID) + 3), st.binary(max_size=4))
def test_hand_written_event_reader_agrees_with_fastavro(flips, cut, tail):
    """The router's own v1 readers (C and Python) and fastavro's generic one: the same event or all a
    DecodeError."""
    value = bytearray(VALID)
    for at, byte in flips:
        value[at] = byte
    value = bytes(value[:max(cut, codec.HEADER.size)]) + tail
    value = codec.FRAME + value[codec.HEADER.size:]  # the v1 frame: the hand-written path
    assert _outcome(codec.read_event_v1, value) == _outcome(_fastavro, value) == _outcome(_python_reader, value)


@settings(max_examples=300, deadline=2000)
@given(st.text(max_size=30), st.text(max_size=30), st.one_of(st.none(), st.text(max_size=8)),
       st.one_of(st.none(), st.text(max_size=8)), st.binary(max_size=50),
       st.integers(-62135596800000000, 253402300799999999))  # datetime's range, in µs from the epoch
def test_hand_written_event_reader_reads_what_fastavro_writes(ident, tenant, subject, cause, data, micros):
    event = Event(id=ident, source="s", type="a.b", time=datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(
        microseconds=micros), tenant=tenant, data=data, subject=subject, causationid=cause)
    assert codec.read_event_v1(codec.encode_event(event)) == event == codec.read_event_py(codec.encode_event(event))


@FUZZ
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=20), headers)
def test_structured_cloudevents_with_any_json_fail_cleanly(doc, hs):
    import orjson
    try:
        body = orjson.dumps(doc)
    except TypeError:
        return
    _decode(body, [("content-type", b"application/cloudevents+json"), *hs])


@FUZZ
@given(st.text(max_size=60), st.text(max_size=20), st.text(max_size=20), st.lists(st.text(max_size=20), max_size=3),
       st.one_of(st.none(), st.text(max_size=80)))
def test_subscription_validator_takes_any_strings(name, tenant, workflow, patterns, filter_):
    try:
        build(name=name, tenant=tenant, workflow=workflow, patterns_=patterns, filter=filter_)
    except SubscriptionError:
        pass


cel_pieces = st.sampled_from(["event", "meta", ".", "a", "`b-c`", "==", "!=", "<", "&&", "||", "!", "(", ")",
                              "[", "]", "{", "}", ",", ":", "in", "has", "size", "matches", '"x"', "'y'", "1",
                              "2.5", "-", "true", "null", "?", "startsWith", " ", "\\", '"', "b\"\"", "0x1", "u"])


@FUZZ
@given(st.lists(cel_pieces, max_size=30))
def test_cel_compilation_of_token_soup_fails_cleanly(pieces):
    try:
        filters.compile_filter("".join(pieces))
    except SubscriptionError:
        pass


def test_pathological_filters_are_refused_not_crashed():
    """Nesting is bounded by the CEL parser (32 levels), length by the bus (4,096 characters)."""
    import pytest as _pytest
    for text in ("(" * 2000 + "true" + ")" * 2000, "[" * 2000 + "]" * 2000, "event" + ".a" * 2000,
                 "(" * 40 + "true" + ")" * 40):
        with _pytest.raises(SubscriptionError, match="recursion"):
            filters.compile_filter(text)
    with _pytest.raises(SubscriptionError, match="at most 4096"):
        filters.compile_filter(" && ".join(["event.a == 1"] * 400))
    filters.compile_filter("(" * 20 + "true" + ")" * 20)  # ordinary depth still compiles


@FUZZ
@given(headers)
def test_lineage_headers_parse_or_raise_lineage_error(hs):
    try:
        lineage.from_headers(hs)
    except lineage.LineageError:
        pass


def test_a_catastrophic_regex_runs_in_linear_time_on_both_paths():
    """`(a+)+$` on "aaaa…b" takes exponential time in a backtracking engine; RE2 (the index's captured
    path) and the C++ CEL engine's RE2 answer at once. pytest-timeout (per test) is the guard."""
    from router.matching.index import Entry, SubscriptionIndex
    evil = 'event.s.matches("(a+)+$")'
    payload = {"s": "a" * 5000 + "b"}
    meta = new_event("x.y", payload, tenant="t", source="s", max_bytes=LIMIT).meta()
    compiled = filters.compile_filter(evil)
    assert compiled(filters.activation(payload, meta)) is False  # the CEL engine
    index = SubscriptionIndex([Entry.build("t/n", "n", "t", "w", ("x.y",), compiled)])
    assert index.match("t", "x.y", lambda: payload, lambda: meta).matched == []  # the captured path
    for _ in range(200):
        index.match("t", "x.y", lambda: payload, lambda: meta)


def test_a_quadratic_filter_is_cut_off_by_the_engines_budget_not_run_for_minutes():
    """Nested comprehensions over a big list cost |list|² per event; the engine's iteration budget stops
    them, and the filter counts as an error (no match) for that event, like any other filter error."""
    import pytest as _pytest
    quadratic = filters.compile_filter("event.a.all(x, event.a.exists(y, y == x))")
    meta = new_event("x.y", {}, tenant="t", source="s", max_bytes=LIMIT).meta()
    assert quadratic(filters.activation({"a": list(range(50))}, meta)) is True  # small lists: fine
    with _pytest.raises(filters.FilterError, match="evaluation stopped by the CEL engine: .*budget"):
        quadratic(filters.activation({"a": list(range(5000))}, meta))
