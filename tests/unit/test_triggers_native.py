"""router/envelope/_triggers.c against triggers.build_py, its reference: the same records, the same wires
counted, the same place to stop for a missing or stale wire, the same refusals, nothing leaked; and what it
builds decodes as the trigger it is."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings, strategies as st

from router.envelope import codec, new_event, triggers
from router.matching.index import Entry

from .test_native import _held_after

BUILDS = [triggers.build_py, triggers.build_c]


class Wire:
    __slots__ = ("parts",)

    def __init__(self, entry: Entry, topic: str) -> None:
        self.parts = triggers.parts(entry, topic)


def _entry(name: str, tenant: str = "acme", workflow: str = "wf") -> Entry:
    return Entry.build(f"{tenant}/{name}", name, tenant, workflow, ("a.*",), None)


def _event(data: dict):
    event = new_event("a.b", data, tenant="acme", source="s", max_bytes=1 << 16)
    value = codec.encode_event(event)
    return event, memoryview(value)[codec.HEADER.size:]


def _run(build, matched, wires, body, key=b"k", extra=(), event_id=b"ev-1", start=0):
    outbox, touched = [], []
    stamp, source = codec.avro_long(1_800_000_000_000_000), codec.source_tail("evt.a", 3, 12345)
    at = build(matched, wires, codec.FRAME, body, stamp, source, key, list(extra), event_id, outbox, touched, start)
    return at, outbox, touched


def test_the_c_builder_is_built():
    assert triggers.build_c is not None, "router/envelope/_triggers.c was not compiled: run `make install`"
    assert triggers.build is triggers.build_c


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12),
                          st.text(min_size=1, max_size=12)), min_size=1, max_size=6, unique_by=lambda t: t[0]),
       st.one_of(st.none(), st.binary(max_size=20)),
       st.lists(st.tuples(st.sampled_from(["evbus-hops", "evbus-chain"]), st.binary(max_size=8)), max_size=2),
       st.text(min_size=1, max_size=40), st.dictionaries(st.text(max_size=5), st.integers(-2**53, 2**53), max_size=4))
def test_c_and_python_build_the_same_records(subs, key, extra, event_id, data):
    entries = [_entry(name, tenant, workflow) for name, tenant, workflow in subs]
    wires = {e.key: Wire(e, f"t.{e.workflow}") for e in entries}
    _, body = _event(data)
    out = [_run(build, entries, wires, body, key, extra, event_id.encode()) for build in BUILDS]
    assert out[0] == out[1]
    at, outbox, touched = out[1]
    assert at == len(entries) and [w.parts[0] for w in touched] == entries
    for (topic, k, value, headers), entry in zip(outbox, entries):
        trigger = codec.decode_trigger(value)  # the bytes are a trigger the runner reads
        assert trigger["subscription"] == entry.name and trigger["tenant"] == entry.tenant
        assert trigger["idempotency_key"] == f"{event_id}:{entry.name}"
        assert (trigger["source_topic"], trigger["source_partition"], trigger["source_offset"]) == ("evt.a", 3, 12345)
        assert trigger["event"].payload() == data
        assert headers[:3] == [("evbus-tenant", entry.tenant.encode()), ("evbus-subscription", entry.name.encode()),
                               ("evbus-idempotency-key", f"{event_id}:{entry.name}".encode())]
        assert headers[3:] == extra and (topic, k) == (f"t.{entry.workflow}", key)


@pytest.mark.parametrize("build", BUILDS)
def test_stops_at_a_missing_or_stale_wire_and_goes_on_from_there(build):
    a, b, c = _entry("a"), _entry("b"), _entry("c")
    wires = {a.key: Wire(a, "t.a"), c.key: Wire(c, "t.c")}
    _, body = _event({"n": 1})
    at, outbox, touched = _run(build, [a, b, c], wires, body)
    assert (at, len(outbox), touched) == (1, 1, [wires[a.key]])  # b has no wire yet
    wires[b.key] = Wire(_entry("b"), "t.b")  # made for an equal but other Entry: a replaced subscription
    assert _run(build, [a, b, c], wires, body, start=1)[0] == 1
    wires[b.key] = Wire(b, "t.b")
    at, outbox, touched = _run(build, [a, b, c], wires, body, start=1)
    assert at == 3 and [r[0] for r in outbox] == ["t.b", "t.c"]


def test_c_refuses_what_python_would_not_build():
    a = _entry("a")
    _, body = _event({})
    wires = {a.key: Wire(a, "t.a")}
    stamp, source = codec.avro_long(1), codec.source_tail("t", 0, 0)
    with pytest.raises(TypeError, match="key must be bytes"):
        triggers.build_c([a], wires, codec.FRAME, body, stamp, source, "text", [], b"id", [], [], 0)
    with pytest.raises(TypeError, match="must be lists"):
        triggers.build_c((a,), wires, codec.FRAME, body, stamp, source, b"k", [], b"id", [], [], 0)
    bad = Wire(a, "t.a")
    bad.parts = bad.parts[:3]
    with pytest.raises(TypeError, match="parts"):
        triggers.build_c([a], {a.key: bad}, codec.FRAME, body, stamp, source, b"k", [], b"id", [], [], 0)
    with pytest.raises(TypeError, match="12 arguments"):
        triggers.build_c([a], wires)


def test_the_c_builder_leaks_nothing():
    entries = [_entry(f"s{i}") for i in range(3)]
    wires = {e.key: Wire(e, "t") for e in entries}
    _, body = _event({"n": 1, "s": "x" * 50})
    key = b"k" * 10
    before = sys.getrefcount(key)

    def run() -> None:
        for _ in range(3000):
            _run(triggers.build_c, entries, wires, body, key, [("evbus-hops", b"1")])
            _run(triggers.build_c, entries, {}, body, key)  # stops at once

    grown = _held_after(run)
    assert grown < 64 * 1024, f"{grown} bytes still held after 18,000 triggers"
    assert sys.getrefcount(key) == before



def test_c_survives_lookups_that_change_what_it_reads():
    """Attribute and dict lookups can run Python code: a key whose hash empties the list being read, and a
    wire whose parts are computed each time, must not crash it or make it read freed memory."""
    class Key(str):
        def __hash__(self):
            matched.clear()
            return str.__hash__(self)

    a, b = _entry("a"), _entry("b")
    matched = [a, b]
    wires = {a.key: Wire(a, "t.a"), b.key: Wire(b, "t.b")}
    object.__setattr__(a, "key", Key(a.key))
    _, body = _event({})
    out = _run(triggers.build_c, matched, wires, body)
    assert out[0] == 1 and len(out[1]) == 1  # a was built; the list was then empty

    class Computed:
        def __init__(self, entry):
            self.entry = entry

        @property
        def parts(self):
            return triggers.parts(self.entry, "t.c")  # a new tuple each time, held by nobody else

    c = _entry("c")
    assert _run(triggers.build_c, [c], {c.key: Computed(c)}, body)[1][0][0] == "t.c"
    assert _run(triggers.build_py, [c], {c.key: Computed(c)}, body)[1][0][0] == "t.c"


@pytest.mark.parametrize("build", BUILDS)
def test_a_start_past_the_end_returns_the_length(build):
    a = _entry("a")
    _, body = _event({})
    assert _run(build, [a], {a.key: Wire(a, "t")}, body, start=5) == (1, [], [])
