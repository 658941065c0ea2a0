"""Router._route's triggers without a broker: the same records through a checkpoint that has an outbox (the
C builder appends to it) and one that takes records one at a time; a subscription replaced mid-transaction
gets a new wire and both wires' triggers are counted; loop limits still dead-letter."""

from __future__ import annotations

from collections import Counter

from benchmarks.hotpath import _Msg
from router import lineage
from router.config import Settings
from router.envelope import codec, new_event
from router.matching.index import Entry, SubscriptionIndex
from router.router import Router


class _Topics:
    def ensure(self, *_, **__) -> None:
        pass


class _Outbox:
    pending = 0
    max_buffered = 1  # handed over after each event

    def __init__(self) -> None:
        self.outbox: list[tuple] = []
        self.sent_calls = 0

    def sent(self) -> None:
        self.sent_calls += 1


class _OneAtATime:
    pending = 0

    def __init__(self) -> None:
        self.records: list[tuple] = []

    def send(self, *record) -> None:
        self.records.append(record)


def _entry(name: str, workflow: str = "wf", recursion: int = 0) -> Entry:
    return Entry.build(f"acme/{name}", name, "acme", workflow, ("user.*",), None, recursion)


def _router(checkpoint, entries) -> Router:
    router = Router(Settings(bootstrap="127.0.0.1:9", namespace="rt."))
    router.view.index = SubscriptionIndex(entries)
    router.topics = _Topics()
    router._checkpoint = checkpoint
    return router


def _msg(i: int, headers=None) -> _Msg:
    value = codec.encode_event(new_event("user.created", {"n": i}, tenant="acme", source="t", max_bytes=1 << 16,
                                         event_id=f"e{i}"))
    return _Msg("rt.events.user", i, b"acme", value, headers)


def _strip(records):
    """Records without the routing time, which differs from run to run."""
    return [(topic, key, codec.decode_trigger(value)["idempotency_key"], headers)
            for topic, key, value, headers in records]


def test_both_kinds_of_checkpoint_get_the_same_records():
    entries = [_entry("a"), _entry("b", "wf2"), _entry("c")]
    with_outbox, one_at_a_time = _Outbox(), _OneAtATime()
    for cp in (with_outbox, one_at_a_time):
        router = _router(cp, entries)
        for i in range(5):
            router._route(_msg(i))
    assert with_outbox.sent_calls == 5  # once per event, after its triggers
    assert _strip(with_outbox.outbox) == _strip(one_at_a_time.records)
    assert [r[2] for r in _strip(with_outbox.outbox)[:3]] == ["e0:a", "e0:b", "e0:c"]
    assert len(with_outbox.outbox) == 15


def test_a_replaced_subscription_gets_a_new_wire_and_both_are_counted():
    cp = _Outbox()
    a = _entry("a")
    router = _router(cp, [a])
    router._route(_msg(0))
    router._route(_msg(1))
    replaced = _entry("a", "wf-new")
    router.view.index.put(replaced)
    router._route(_msg(2))
    counts = Counter(router._touched)
    assert sorted((w.parts[0].workflow, n) for w, n in counts.items()) == [("wf", 2), ("wf-new", 1)]
    assert [r[0] for r in cp.outbox] == ["rt.triggers.wf", "rt.triggers.wf", "rt.triggers.wf-new"]
    router._flush_metrics()
    assert router._touched == []


def test_a_subscription_over_its_recursion_limit_gets_no_trigger_and_a_dead_letter():
    cp = _OneAtATime()
    looping, other = _entry("a"), _entry("b")
    router = _router(cp, [looping, other])
    chain = lineage.Lineage(2, ("acme/a", "acme/a"))
    router._route(_msg(0, headers=chain.headers()))
    topics = [r[0] for r in cp.records]
    assert topics.count("rt.triggers.wf") == 1  # b's trigger only
    dead = [r for r in cp.records if r[0] == router.settings.deadletter_topic]
    assert len(dead) == 1 and dict(dead[0][3])["evbus-dlq-reason"] == b"loop"
    trigger = next(r for r in cp.records if r[0] == "rt.triggers.wf")
    assert ("evbus-hops", b"2") in trigger[3]  # the event's lineage goes with its triggers
