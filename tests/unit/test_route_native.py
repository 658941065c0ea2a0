"""The common case of routing in C (router/_route.c) against Router._route, its reference: the same records,
dead letters, counts and latency samples, record by record, whichever path each record takes; the records
it must leave to Router._route are left there, from their start; the outbox is handed over at max_buffered."""

from __future__ import annotations

import random
import sys
from collections import Counter

import pytest

from benchmarks.hotpath import _Msg
from benchmarks.matching import build_index
from benchmarks.workload import events, subscriptions
from router import lineage
from router.client import event_headers
from router.config import Settings
from router.envelope import codec, new_event
from router.matching.filters import compile_filter
from router.matching import index as index_module
from router.matching.index import Entry
from router.router import Router, native

from .test_router_triggers import _Outbox

assert native is not None, "router/_route.c is not built: `make install` builds it"

SUBS = subscriptions(2000)


class _Topics:
    def ensure(self, *_, **__) -> None:
        pass


class _Checkpoint:
    """An outbox that hands its records over (to `handed`) once max_buffered wait, as Checkpoint does."""

    pending = 0

    def __init__(self, max_buffered: int = 1 << 40) -> None:
        self.outbox: list[tuple] = []
        self.handed: list[tuple] = []
        self.max_buffered = max_buffered
        self.overflows = 0

    def sent(self) -> None:
        if len(self.outbox) >= self.max_buffered:
            self.overflows += 1
            self.handed += self.outbox
            self.outbox = []

    def send(self, *record) -> None:  # the dead letters' way in
        self.outbox.append(record)
        self.sent()

    def records(self) -> list[tuple]:
        return self.handed + self.outbox


class _Counted(Router):
    """Counts the records Router._route itself routes (those the C path left to it)."""

    slow = 0

    def __init__(self, *args, **kw) -> None:
        self.reported: list[tuple] = []
        super().__init__(*args, **kw)

    def _route(self, msg) -> None:
        self.slow += 1
        super()._route(msg)

    def _report(self, errors, event, msg) -> None:
        self.reported += [(entry.key, message, event.id, msg.offset()) for entry, message in errors]
        super()._report(errors, event, msg)


def _router(checkpoint, extra_entries=(), fast: bool = True, cls: type[_Counted] = _Counted) -> _Counted:
    router = cls(Settings(bootstrap="127.0.0.1:9", namespace="rt."))
    index = build_index(SUBS)
    for entry in extra_entries:
        index.put(entry)
    router.view.index = index
    router.topics = _Topics()
    router._checkpoint = checkpoint
    if not fast:
        router._fast = None
    return router


class _Full(_Msg):
    __slots__ = ("_error",)

    def error(self):
        return self._error


def _msg(i: int, value: bytes | None, key: bytes | None = b"k", headers=None, error=None,
         topic: str = "rt.events.user") -> _Full:
    msg = _Full(topic, i, key, value, headers)
    msg._error = error
    return msg


def _event(i: int, etype: str, payload, tenant: str) -> bytes:
    return codec.encode_event(new_event(etype, payload, tenant=tenant, source="t", max_bytes=1 << 20,
                                        event_id=f"e{i}"))


def _workload(count: int, seed: int = 7) -> list[_Full]:
    """Events as the Publisher sends them (its headers on every one)."""
    out = []
    for i, (tenant, etype, payload) in enumerate(events(SUBS, count, seed=seed)):
        event = new_event(etype, payload, tenant=tenant, source="t", max_bytes=1 << 20, event_id=f"e{i}")
        out.append(_msg(i, codec.encode_event(event), key=tenant.encode() if i % 3 else None,
                        headers=event_headers(event), topic=f"rt.events.{event.domain}"))
    return out


def _strip(records):
    """Records without the times that differ from run to run (routing time, dead-letter time)."""
    out = []
    for topic, key, value, headers in records:
        if topic.endswith("deadletters") or any(h[0] == "evbus-dlq-reason" for h in headers or ()):
            out.append((topic, key, value, [h for h in headers if h[0] != "evbus-dlq-time"]))
            continue
        trigger = codec.decode_trigger(value)
        trigger.pop("routed_at")
        out.append((topic, key, repr(trigger), headers))
    return out


def _route_both(msgs, extra_entries=(), max_buffered: int = 1 << 40, chunk: int = 500):
    """The same records through Router._route one by one, and through _route_all in chunks."""
    ref_cp, fast_cp = _Checkpoint(max_buffered), _Checkpoint(max_buffered)
    ref, fast = _router(ref_cp, extra_entries, fast=False), _router(fast_cp, extra_entries)
    for m in msgs:
        ref._route(m)
    for i in range(0, len(msgs), chunk):
        fast._route_all(msgs[i:i + chunk])
    assert len(fast._latency) == len(ref._latency)  # one sample per event routed (not per dead letter)
    assert _strip(fast_cp.records()) == _strip(ref_cp.records())
    assert fast._consumed == ref._consumed
    assert Counter(w.labels for w in fast._touched) == Counter(w.labels for w in ref._touched)
    assert fast.reported == ref.reported  # filters that erred: the same, in the same order
    return ref, fast, ref_cp, fast_cp


def test_the_workload_routes_as_router_route_does_and_all_in_c():
    msgs = _workload(3000)
    ref, fast, ref_cp, fast_cp = _route_both(msgs + msgs)
    assert len(fast_cp.records()) > 3000  # ~1 trigger per event at 2,000 subscriptions
    # a pair met the first time is checked, a plan and a wire made, without leaving C
    assert fast.slow == 0


def test_an_invalid_tenant_or_type_is_a_dead_letter_on_either_path():
    tenant, etype, payload = events(SUBS, 1, seed=29)[0]
    good = codec.read_event_v1(_event(1, etype, payload, tenant))
    fields = {f: getattr(good, f) for f in good.__slots__}
    bad_tenant = codec.encode_event(type(good)(**{**fields, "tenant": "no spaces allowed"}))
    bad_type = codec.encode_event(type(good)(**{**fields, "type": "Not.A-Type!"}))
    msgs = [_msg(1, bad_tenant), _msg(2, _event(2, etype, payload, tenant)), _msg(3, bad_type)]
    ref, fast, _, fast_cp = _route_both(msgs + msgs)
    reasons = [dict(r[3]).get("evbus-dlq-reason") for r in fast_cp.records()]
    assert reasons.count(b"invalid-attribute") == 4
    assert fast.slow == 4  # checked in C, left to _route, which dead-letters them


def test_records_the_c_path_leaves_to_router_route_are_routed_there_from_their_start():
    good = _workload(200, seed=3)
    tenant, etype, payload = events(SUBS, 1, seed=3)[0]
    body = _event(9000, etype, payload, tenant)
    odd = [
        _msg(9001, body[:-3]),  # cut short: bad Avro, a dead letter
        _msg(9002, b"\x00\x09" + body[2:]),  # another frame: an unknown version
        _msg(9003, None),  # no value
        _msg(9004, body, headers=[(lineage.HOPS_HEADER, b"1"), (lineage.CHAIN_HEADER, b"x/y")]),  # a descendant
        _msg(9005, body, headers=[(lineage.HOPS_HEADER, b"99")]),  # past the hop limit: a dead letter
        _msg(9006, _event(9006, etype, payload, "new-tenant-9")),  # a pair not validated yet
        _msg(9007, body, headers=[("ce_specversion", b"1.0")]),  # CloudEvents headers: not an Avro event
        _msg(9008, b"x" * 3_000_000),  # oversized
        _msg(9009, body, headers=[]),  # an empty header list is no headers
        _msg(9010, body, headers=[("evbus-tenant", b"x"), ("X-Other", None)]),  # headers _route does not read
        _msg(9011, body, headers=[("Content-Type", b"application/cloudevents+json")]),  # structured: not JSON
        _msg(9012, body, headers=[("CE_SPECVERSION", b"1.0")]),  # any case: binary mode
        _msg(9013, body, headers=[("EVBUS-HOPS", b"3")]),  # not a lineage header for _route (case), left to it
        _msg(9014, body, headers=[("caf\u00e9", b"1")]),  # a name that is not ASCII: left to _route
        _msg(9015, body, headers=[("content-type", b"application/json")]),
    ]
    mixed = good[:100] + odd + good[100:] + odd
    random.Random(5).shuffle(mixed)
    ref, fast, _, fast_cp = _route_both(good + mixed)
    dead = [r for r in fast_cp.records() if any(h[0] == "evbus-dlq-reason" for h in r[3] or ())]
    assert len(dead) >= 8
    # all but three are left to _route: 9006 (a new pair), 9009 and 9010 (headers _route does not read)
    # are routed in C
    before = fast.slow
    fast._route_all(odd)
    assert fast.slow - before == len(odd) - 3


def test_a_payload_that_is_not_json_is_a_dead_letter_on_either_path():
    tenant, etype, payload = events(SUBS, 1, seed=11)[0]
    good = _event(1, etype, payload, tenant)
    event = codec.read_event_v1(good)
    bad = codec.encode_event(type(event)(**{**{f: getattr(event, f) for f in event.__slots__}, "data": b"{nope"}))
    msgs = [_msg(1, good), _msg(2, bad), _msg(3, good)]
    ref, fast, _, fast_cp = _route_both(msgs + msgs)
    assert any(("evbus-dlq-reason", b"invalid-json") in (r[3] or ()) for r in fast_cp.records())


def test_filters_for_the_cel_engine_and_filters_that_err_are_routed_and_reported_in_c_too():
    tenant, etype, payload = events(SUBS, 1, seed=13)[0]
    cel = compile_filter('size(event) > 0 && "x" + "y" == "xy"')  # not captured by the index
    cel_errs = compile_filter('"x" + "y" == "xy" && event.amount + 1 > 2')  # the CEL engine's, erring sometimes
    errs = compile_filter("event.missing_field > 3")  # a captured filter that errs on most of these events
    extra = [Entry.build(f"{tenant}/cel-one", "cel-one", tenant, "wf-cel", (etype,), cel),
             Entry.build(f"{tenant}/cel-errs", "cel-errs", tenant, "wf-cel-errs", (etype,), cel_errs),
             Entry.build(f"{tenant}/errs", "errs", tenant, "wf-errs", (etype,), errs),
             Entry.build(f"{tenant}/cel-meta", "cel-meta", tenant, "wf-cel-meta", (etype,),
                         compile_filter('meta.source + "" == "t"'))]  # the engine's, with the envelope
    amounts = [None, 5, 0, "five", 2.5, [1]]
    msgs = []
    for i in range(60):
        body = dict(payload)
        if amounts[i % 6] is not None:
            body["amount"] = amounts[i % 6]
        if i % 5 == 0:
            body["missing_field"] = i
        msgs.append(_msg(i, _event(i, etype, body, tenant)))
    ref, fast, _, fast_cp = _route_both(msgs, extra)
    assert fast.slow == 0  # the CEL engine and the reports called from C
    assert sum(1 for r in fast_cp.records() if r[0].endswith("wf-cel")) == len(msgs)
    assert sum(1 for r in fast_cp.records() if r[0].endswith("wf-cel-meta")) == len(msgs)
    assert sum(1 for r in fast_cp.records() if r[0].endswith("wf-cel-errs")) == 10  # amount 5 (2.5 + 1 errs: no mixed arithmetic)
    assert sum(1 for r in fast_cp.records() if r[0].endswith("wf-errs")) == 11  # missing_field 5, 10 .. 55
    erred = Counter(key.split("/")[1] for key, *_ in fast.reported)
    assert erred == {"cel-errs": 40, "errs": 48}, erred


def test_the_outbox_is_handed_over_at_max_buffered():
    msgs = _workload(1000, seed=17)
    ref, fast, ref_cp, fast_cp = _route_both(msgs + msgs, max_buffered=64)
    assert fast_cp.overflows >= len(fast_cp.handed) // 70 > 5
    # handed over as soon as max_buffered records wait: never more than one event's triggers past it
    assert len(fast_cp.outbox) < 64 + 10


def test_a_consumer_error_is_left_to_router_route():
    class _Err:
        def fatal(self):
            return False

        def __str__(self):
            return "broker down"
    msgs = _workload(20, seed=19)
    msgs.insert(5, _msg(99, None, error=_Err()))
    ref, fast, _, _ = _route_both(msgs)
    assert fast._consumed == ref._consumed


def test_wrong_arguments_are_refused():
    router = _router(_Checkpoint())
    msgs = _workload(3)
    with pytest.raises(TypeError):
        native.route(router._fast[:-1], msgs, 0, [], 10)
    with pytest.raises(TypeError):
        native.route(router._fast, iter(msgs), 0, [], 10)
    with pytest.raises(TypeError):
        native.route(router._fast, msgs, 0, (), 10)
    assert native.route(router._fast, msgs, 5, [], 10) == (3, False)  # a start past the end


def test_filters_that_name_meta_get_the_envelope_on_either_path():
    tenant, etype, payload = events(SUBS, 1, seed=23)[0]
    extra = [Entry.build(f"{tenant}/by-source", "by-source", tenant, "wf-meta", (etype,),
                         compile_filter('meta.source == "t"')),
             Entry.build(f"{tenant}/other-source", "other-source", tenant, "wf-meta2", (etype,),
                         compile_filter('meta.source == "u" || meta.subject == "x"'))]
    msgs = [_msg(i, _event(i, etype, payload, tenant)) for i in range(20)]
    ref, fast, _, fast_cp = _route_both(msgs + msgs, extra)
    assert sum(1 for r in fast_cp.records() if r[0].endswith(".wf-meta")) == 40
    assert not any(r[0].endswith(".wf-meta2") for r in fast_cp.records())
    assert fast.slow < 5  # routed in C once the pair and the plan are made


def test_a_bucket_counts_the_filters_that_name_meta_as_subscriptions_come_and_go():
    from router.matching.index import SubscriptionIndex
    index = SubscriptionIndex()

    def entry(name, text):
        return Entry.build(f"t/{name}", name, "t", "wf", ("user.created",), compile_filter(text) if text else None)
    index.put(entry("a", 'event.x == 1'))
    index.put(entry("b", 'meta.source == "s"'))
    assert index.plan("t", "user.created").meta_users == 1
    index.put(entry("b", 'event.y == 2'))  # replaced: no longer names meta
    assert index.plan("t", "user.created").meta_users == 0
    index.put(entry("c", 'has(meta.subject) && event.x == 1'))
    index.put(entry("d", None))
    assert index.plan("t", "user.created").meta_users == 1
    index.remove("t/c")
    assert index.plan("t", "user.created").meta_users == 0


def test_a_checkpoint_with_max_buffered_1_is_handed_each_event():
    msgs = _workload(200, seed=31)
    bare, ref_cp = _Outbox(), _Checkpoint()  # an outbox, sent(), max_buffered 1
    fast, ref = _router(bare), _router(ref_cp, fast=False)
    fast._route_all(msgs)
    for m in msgs:
        ref._route(m)
    assert _strip(bare.outbox) == _strip(ref_cp.records())
    assert len(bare.outbox) > 100 and bare.sent_calls > len(msgs) * 3 // 4  # back in Python after each event


def _cel_case(amount) -> tuple[list[Entry], list[_Full]]:
    """One tenant's events with a captured filter that errs on them and one for the CEL engine."""
    tenant, etype, payload = events(SUBS, 1, seed=13)[0]
    extra = [Entry.build(f"{tenant}/errs", "errs", tenant, "wf-errs", (etype,),
                         compile_filter("event.missing_field > 3")),
             Entry.build(f"{tenant}/cel", "cel", tenant, "wf-cel", (etype,),
                         compile_filter('"x" + "y" == "xy" && event.amount + 1 > 2'))]
    return extra, [_msg(i, _event(i, etype, {**payload, "amount": amount}, tenant)) for i in range(100)]


def test_filters_for_the_cel_engine_and_their_errors_leak_nothing_in_c():
    extra, msgs = _cel_case("five")  # both filters err on every event
    router = _router(_Checkpoint(), extra)
    router._route_all(msgs)
    before = [sys.getrefcount(e) for e in extra]
    for _ in range(10):
        router._route_all(msgs)
    assert [sys.getrefcount(e) for e in extra] == before  # the errors' list is freed with its entries
    assert router.slow == 0 and len(router.reported) == 11 * 2 * len(msgs)


def test_a_payload_the_cel_engine_cannot_bind_is_reported_alike(monkeypatch):
    def unbindable(*_):
        raise TypeError("cannot bind")
    monkeypatch.setattr(index_module, "activation", unbindable)
    extra, msgs = _cel_case(5)
    ref, fast, _, _ = _route_both(msgs, extra)  # (the same reports, in order)
    assert fast.slow == 0
    assert {m for _, m, *_ in fast.reported} == {"TypeError: cannot bind", "no such key or no matching overload"}


class _Refusing(_Counted):
    exc: type[BaseException] = RuntimeError

    def _report(self, errors, event, msg) -> None:
        raise self.exc("refused")


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_report_that_raises_propagates_with_the_lock_released_and_nothing_sent(exc):
    extra, msgs = _cel_case("five")
    cp = _Checkpoint()
    router = _router(cp, extra, cls=_Refusing)
    router.exc = exc
    with pytest.raises(exc, match="refused"):
        router._route_all(msgs)
    assert not router.view.lock.locked() and cp.records() == [] and router.slow == 0
