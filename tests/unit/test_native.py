"""The C reader of v1 events (router/envelope/_v1.c) against the Python one in codec.py, its reference:
the same Event or the same error on any bytes, and nothing leaked on either path."""

from __future__ import annotations

import dataclasses
import pickle
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from router.envelope import Event, codec, new_event
from router.matching import index as ix, predicates as pr
from router.matching.index import Entry, SubscriptionIndex

from .test_matching_differential import TENANTS, TYPES, _meta, compiled, filters, payload, subscription

VALID = codec.encode_event(new_event("order.placed", {"n": 1, "s": "x" * 20}, tenant="acme", source="s",
                                     max_bytes=1 << 16, subject="sub", causationid="c-1"))
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _outcome(read, value):
    try:
        return read(value)
    except (ValueError, IndexError, OverflowError) as exc:
        return type(exc).__name__


def test_the_c_reader_is_built():
    assert codec.native is not None, "router/envelope/_v1.c was not compiled: run `make install` (needs a C compiler)"
    assert codec.read_event_v1(VALID) == codec.read_event_py(VALID)


@settings(max_examples=1500, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(codec.HEADER.size, len(VALID) - 1), st.integers(0, 255)), max_size=6),
       st.integers(codec.HEADER.size, len(VALID) + 3), st.binary(max_size=4))
def test_c_and_python_readers_agree_on_mutated_events(flips, cut, tail):
    value = bytearray(VALID)
    for at, byte in flips:
        value[at] = byte
    value = bytes(value[:cut]) + tail
    assert _outcome(codec.native.read_event, value) == _outcome(codec.read_event_py, value)


def test_c_and_python_readers_agree_on_every_single_byte_change():
    """Exhaustive where it is cheap: every byte after the frame set to each of its 256 values, and every cut."""
    for at in range(codec.HEADER.size, len(VALID)):
        value = bytearray(VALID)
        for byte in range(256):
            value[at] = byte
            assert _outcome(codec.native.read_event, bytes(value)) == _outcome(codec.read_event_py, bytes(value)), \
                (at, byte)
        cut = VALID[:at]
        assert _outcome(codec.native.read_event, cut) == _outcome(codec.read_event_py, cut), at


def _held_after(run) -> int:
    """Bytes Python's allocators still hold after a second `run()` (the first warms caches and free lists)."""
    run()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _varint(z: int) -> bytes:
    """A raw varint of any width (codec.avro_long_py zig-zags first and stops at 64 bits; these tests need
    the widths a broken writer could send)."""
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _with_time(raw: bytes) -> bytes:
    """VALID with the time field's varint replaced by raw bytes."""
    pos = codec.HEADER.size
    for _ in range(4):  # id, source, specversion, type: length-prefixed strings
        n, pos = codec._read_varint(VALID, pos)
        pos += n
    _, end = codec._read_varint(VALID, pos)
    return VALID[:pos] + raw + VALID[end:]


@pytest.mark.parametrize("raw", [
    _varint(0), _varint(1), _varint(2 ** 63 - 2), _varint(2 ** 64 - 1),  # zig-zag extremes
    _varint(2 ** 64), _varint(2 ** 69),  # bits past the 64th: the Python int is out of every range
    b"\xff" * 9 + b"\x01", b"\xff" * 10 + b"\x01",  # 10 bytes, then 11 (too long)
    b"\x80" * 9 + b"\x7f", _varint(253402300799999999 * 2), _varint(-62135596800000000 * -2 - 1),
])
def test_c_and_python_readers_agree_on_extreme_times(raw):
    value = _with_time(raw)
    assert _outcome(codec.native.read_event, value) == _outcome(codec.read_event_py, value)


@settings(max_examples=300, deadline=2000)
@given(st.text(max_size=30), st.text(max_size=30), st.one_of(st.none(), st.text(max_size=8)),
       st.binary(max_size=50), st.integers(-62135596800000000, 253402300799999999))
def test_the_c_reader_builds_the_same_event(ident, tenant, subject, data, micros):
    event = new_event("a.b", {}, tenant="t", source="s", max_bytes=1 << 16)
    event = dataclasses.replace(event, id=ident, tenant=tenant, subject=subject, data=data,
                                time=EPOCH + timedelta(microseconds=micros))
    value = codec.encode_event(event)
    read = codec.native.read_event(value)
    assert read == event == codec.read_event_py(value)
    assert hash(read) == hash(event) and repr(read) == repr(event)


def test_an_event_from_c_is_an_ordinary_frozen_event():
    event = codec.native.read_event(VALID)
    assert type(event) is Event
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.tenant = "other"
    assert pickle.loads(pickle.dumps(event)) == event
    assert dataclasses.replace(event, tenant="b").tenant == "b"
    assert event.payload() == {"n": 1, "s": "x" * 20} and event.meta()["subject"] == "sub"


def test_the_c_module_leaks_nothing_on_good_or_bad_bytes():
    bad = [VALID[:-3], VALID + b"\x00", _with_time(b"\xff" * 11), VALID[:20] + b"\xff\xfe" + VALID[22:]]

    def run() -> None:
        for _ in range(5000):
            codec.native.read_event(VALID)
            codec.native.avro_long(1_800_000_000_000_000)
            codec.native.micros(EPOCH)
            for value in bad:
                _outcome(codec.native.read_event, value)

    grown = _held_after(run)
    assert grown < 64 * 1024, f"{grown} bytes still held after 25,000 reads and 10,000 encodings"


def test_configure_refuses_a_type_it_cannot_fill():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Other:
        id: str

    with pytest.raises(TypeError, match="slots"):
        codec.native.configure(Other, EPOCH)
    assert codec.native.read_event(VALID) == codec.read_event_py(VALID)  # still configured for Event


@settings(max_examples=500, deadline=2000)
@given(st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.integers(-200, 200)))
def test_c_and_python_avro_long_agree(n):
    assert codec.native.avro_long(n) == codec.avro_long_py(n)


def test_c_avro_long_refuses_what_is_not_a_long():
    with pytest.raises(OverflowError):
        codec.native.avro_long(2 ** 63)
    with pytest.raises(TypeError):
        codec.native.avro_long("1")


@settings(max_examples=500, deadline=2000)
@given(st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-11, minutes=-30)),
                                               timezone(timedelta(hours=14))])))
def test_c_and_python_micros_agree(dt):
    assert codec.native.micros(dt) == codec.micros_py(dt)


def test_c_micros_refuses_a_naive_time_as_python_does():
    naive = datetime(2026, 1, 1)
    for micros in (codec.native.micros, codec.micros_py):
        with pytest.raises(TypeError):
            micros(naive)


# The plan walk (router/matching/_plan.c) against index.candidates_py, on the differential test's
# random subscriptions and events: the same matches, errors and entries left for CEL, in the same order.


def _walk(candidates, plan, event, meta):
    matched, errors = [], []
    try:
        rest = candidates(plan.eq, plan.has, plan.scan, event, meta, matched, errors)
    except Exception as exc:  # both sides must fail alike
        return type(exc).__name__
    return [e.key for e in matched], [(e.key, m) for e, m in errors], [e.key for e in rest]


def test_the_plan_walk_is_built():
    assert ix.native is not None, "router/matching/_plan.c was not compiled: run `make install` (needs a C compiler)"
    assert ix.candidates is ix.native.candidates


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.lists(subscription, min_size=1, max_size=12),
       st.lists(st.tuples(st.sampled_from(TENANTS), st.sampled_from(TYPES), payload), min_size=1, max_size=5))
def test_c_and_python_plan_walks_agree(subs, events):
    entries = []
    for i, (tenant, patterns, text) in enumerate(subs):
        f = compiled(text) if text is not None else None
        entries.append(Entry.build(f"{tenant}/s{i}", f"s{i}", tenant, "wf", tuple(dict.fromkeys(patterns)), f))
    index = SubscriptionIndex(entries)
    for tenant, etype, event in events:
        plan = index.plan(tenant, etype)
        meta = _meta() | {"type": etype, "tenant": tenant}
        assert _walk(ix.native.candidates, plan, event, meta) == _walk(ix.candidates_py, plan, event, meta)


def test_the_plan_walk_leaks_nothing():
    entries = [Entry.build(f"t/{i}", f"{i}", "t", "wf", ("a.b",), compiled(text)) for i, text in enumerate(
        ['event.dept == "Finance"', 'event.sev in ["a", 1]', "has(event.m) && event.n > 2", "event.n > 1",
         'event.s.startsWith("x")', "event.q.r == 1"])]
    index = SubscriptionIndex(entries)
    plan = index.plan("t", "a.b")
    events = [{"dept": "Finance", "sev": 1, "m": 1, "n": 3, "s": "xy"}, {"dept": ["x"], "n": "3", "q": {"r": 1}},
              [1, 2], None, {"sev": {"k": [1]}}]

    def run() -> None:
        for _ in range(3000):
            for event in events:
                _walk(ix.native.candidates, plan, event, {})

    grown = _held_after(run)
    assert grown < 64 * 1024, f"{grown} bytes still held after 15,000 walks"


FILTERS = ['event.dept == "Finance"', 'event.sev in ["a", 1, true, null]', "has(event.m) && event.n > 2",
           "has(event.m) && event.n + 1 > 2", "event.n > 1", 'event.s.startsWith("x")', "event.q.r == 1",
           'event.q.r == 1 && event.n * 2 == 6', 'meta.source == "bench" && event.n > 0', "event.flag",
           'event["content-type"] == "a"', "size(event.l) > 1", 'event.dept == "Finance" && event.n + 0 == 3']
EVENTS = [{"dept": "Finance", "sev": 1, "m": 1, "n": 3, "s": "xy", "flag": True, "l": [1, 2]},
          {"dept": ["x"], "n": "3", "q": {"r": 1}, "sev": True}, {"sev": None, "m": None, "n": 3.0, "q": {"r": 1.0}},
          {"content-type": "a", "flag": 1, "l": "ab"}, {"sev": {"k": [1]}, "n": 2}, [1, 2], None, "text", 3]


def test_c_and_python_plan_walks_agree_on_every_kind_of_anchor_and_event():
    """Each branch of the walk on purpose: exact and checked anchors, has() before a CEL-only rest, decided
    filters that hold, fail and err, nested and meta paths, values that need a key (bool, null, lists), and
    events that are not objects."""
    index = SubscriptionIndex([Entry.build(f"t/{i}", f"{i}", "t", "wf", ("a.b",), compiled(text))
                               for i, text in enumerate(FILTERS)])
    plan = index.plan("t", "a.b")
    assert plan.eq and plan.has and any(e.decide is None for e in index._entries.values())
    outcomes = set()
    for event in EVENTS:
        meta = _meta() | {"type": "a.b", "tenant": "t", "source": "bench"}
        c, py = _walk(ix.native.candidates, plan, event, meta), _walk(ix.candidates_py, plan, event, meta)
        assert c == py, event
        outcomes.update(("matched", "errors", "rest")[i] for i in range(3) if py[i])
    assert outcomes == {"matched", "errors", "rest"}  # every output was exercised


# The captured filters as data (predicates.native_tree), evaluated in C, against their closures
# (compile_tree), on every event: the plan walk above meets them only where an anchor already holds.

@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(filters, st.lists(payload, min_size=1, max_size=6))
def test_filters_as_data_decide_as_their_closures(text, payloads):
    tree = pr.analyse(text)
    assume(pr.captured(tree))
    closure, native = pr.compile_tree(tree), pr.native_tree(tree)
    meta = _meta()
    for event in [*payloads, None, [], "x"]:
        assert ix.native.decide(native, event, meta) is closure(event, meta)


@pytest.mark.parametrize("text", ['event.a == true || event.b == 1', 'event.a == false || event.b == 1',
                                  'event.a < 1 || event.b == 1', 'event.a >= 1 || event.b == 1',
                                  'event.a != 1 || event.b == 1', 'size(event.a) <= 1 || event.b == 1',
                                  'event.a in [1, true, null, "x", 2.5] || event.b == 1',
                                  'event.a.endsWith("x") || event.a.startsWith("y") || event.a.contains("z")',
                                  '!(event.a == null) && has(event.b)', 'has(event.a.z) || event.a.y == 1'])
def test_every_field_test_on_every_kind_of_value(text):
    tree = pr.analyse(text)
    closure, native = pr.compile_tree(tree), pr.native_tree(tree)
    values = [None, True, False, 0, 1, 1.0, 2, 2.5, -1, float("nan"), "", "x", "yx", "az", "zz", "y", [], [1],
              {}, {"z": 1}, {"y": 1}]
    for a in values:
        for event in ({"a": a}, {"a": a, "b": 1}, {"a": a, "b": None}, {}):
            assert ix.native.decide(native, event, {}) is closure(event, {}), (text, event)
