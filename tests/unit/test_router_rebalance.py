"""A rebalance callback inside the router's batch read (router.Router._route_batch). librdkafka runs rebalance
callbacks inside poll() and consume(). Inside consume() the callback comes after the call has taken the
first record through poll(): that record must already be routed, so that the revoke's commit (which takes
the consumer's position, past it) holds its triggers, and so that a loss aborts them with it. The consumer
here runs the callback inside consume() as librdkafka does: what the call gathered of the partitions taken
away is purged by the pause barrier queued before the callback, and what it returns is the new assignment's.
Also the loop's other exits from a rebalance: a failure while routing makes the revoke at close abort
instead of committing, a fatal consumer error stops the router, and a rewind skips a partition whose fetch
has not started. No broker: the router is made, not run, with a checkpoint that records what it is asked
to do."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError as CKError, KafkaException, TopicPartition

from router.config import Settings
from router.errors import KafkaError
from router.kafka.transaction import Checkpoint as RealCheckpoint
from router.router import Router

TOPIC = "t.events.load"


class Msg:
    """The part of confluent_kafka.Message the batch read uses."""

    def __init__(self, partition: int, offset: int, error: CKError | None = None) -> None:
        self._partition, self._offset, self._error = partition, offset, error

    def error(self) -> CKError | None:
        return self._error

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def __repr__(self) -> str:
        return f"{TOPIC}[{self._partition}]@{self._offset}"


class Checkpoint:
    def __init__(self, log: list) -> None:
        self.log = log
        self.pending = 0
        self.opened_at, self.last_commit_s = 0.0, 0.0
        self.in_flight = self.commit_settled = False

    def start_commit(self) -> None:
        self.log.append(("commit", self.pending))
        self.pending = 0

    def finish_commit(self) -> None:
        pass

    def abort(self, rewind: bool = True) -> None:
        self.log.append(("abort", self.pending, "rewind" if rewind else "no rewind"))
        self.pending = 0


class Consumer:
    """Hands out `queue` in order; the first consume() runs `callback` (the router's on_assign, on_revoke
    or on_lost), then returns `after`: the records of the assignment that follows."""

    def __init__(self, queue: list[Msg], callback=None, after: list[Msg] = ()) -> None:
        self.queue = list(queue)
        self.callback, self.after = callback, list(after)

    def poll(self, timeout: float):
        return self.queue.pop(0) if self.queue else None

    def consume(self, n: int, timeout: float) -> list[Msg]:
        if self.callback is None:
            out, self.queue = self.queue[:n], self.queue[n:]
            return out
        callback, self.callback = self.callback, None
        self.queue = []  # purged: the partitions taken away were paused before the callback was queued
        callback(self, [])
        return self.after[:n]


@pytest.fixture
def router():
    r = Router(Settings(bootstrap="127.0.0.1:1"), batch_size=100)
    r.log = []
    r._checkpoint = Checkpoint(r.log)
    r._route = lambda msg: r.log.append(("route", repr(msg)))
    r._flush_metrics = lambda: None
    return r


def stream(n: int) -> list[Msg]:
    return [Msg(0, offset) for offset in range(n)]


def test_without_a_rebalance_the_batch_is_routed_in_order(router):
    router.consumer = Consumer(stream(5))
    assert router._route_batch(0.1) == 5
    assert router.log == [("route", repr(m)) for m in stream(5)]
    assert router._checkpoint.pending == 5
    assert router._route_batch(0.1) == 0


def test_revoke_inside_consume_commits_the_record_in_hand(router):
    router.consumer = Consumer(stream(10), callback=router._on_revoke, after=[Msg(1, 7), Msg(1, 8)])
    assert router._route_batch(0.1) == 3
    # the record poll() returned is routed before the revoke commits the consumer's position (past it)
    assert router.log == [("route", f"{TOPIC}[0]@0"), ("commit", 1),
                          ("route", f"{TOPIC}[1]@7"), ("route", f"{TOPIC}[1]@8")]
    assert router._checkpoint.pending == 2


def test_lost_inside_consume_aborts_the_record_in_hand(router):
    router.consumer = Consumer(stream(10), callback=router._on_lost)
    assert router._route_batch(0.1) == 1
    # aborted with the transaction: the partition's next owner reads it again from the committed offset
    assert router.log == [("route", f"{TOPIC}[0]@0"), ("abort", 1, "no rewind")]
    assert router._checkpoint.pending == 0


def test_the_record_in_hand_is_routed_before_consume_is_called(router):
    calls = []
    router.consumer = Consumer(stream(3))
    router._route = lambda msg: calls.append(("route", repr(msg)))
    consume = router.consumer.consume
    router.consumer.consume = lambda n, t: calls.append(("consume", n)) or consume(n, t)
    router._route_batch(0.1)
    assert calls == [("route", f"{TOPIC}[0]@0"), ("consume", 99), ("route", f"{TOPIC}[0]@1"),
                     ("route", f"{TOPIC}[0]@2")]


def test_a_failure_while_routing_makes_the_revoke_at_close_abort(router):
    """The consumer's position is past the whole batch when a record of it fails; consumer.close() then
    runs on_revoke, which must not commit the routed part with that position (the rest would be lost)."""
    router.consumer = Consumer(stream(5))

    def route(msg):
        if msg.offset() == 2:
            raise RuntimeError("a bug while routing")
        router.log.append(("route", repr(msg)))

    router._route = route
    with pytest.raises(RuntimeError):
        router._loop()
    router._on_revoke(router.consumer, [])  # what consumer.close() runs next
    assert router.log == [("route", f"{TOPIC}[0]@0"), ("route", f"{TOPIC}[0]@1"), ("abort", 2, "no rewind")]


def test_a_fatal_consumer_error_stops_the_router_and_others_are_logged():
    r = Router(Settings(bootstrap="127.0.0.1:1"))
    Router._route(r, Msg(0, -1, CKError(CKError._TRANSPORT, "broker down")))  # logged, routing goes on
    with pytest.raises(KafkaError, match="fenced"):
        Router._route(r, Msg(0, -1, CKError(CKError._FENCED, "fenced static member", fatal=True)))


class RewindConsumer:
    def __init__(self, seek_error: int | None) -> None:
        self.seek_error, self.seeks = seek_error, []

    def assignment(self):
        return [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]

    def committed(self, partitions, timeout):
        return [TopicPartition(tp.topic, tp.partition, 40 + tp.partition) for tp in partitions]

    def seek(self, tp) -> None:
        self.seeks.append((tp.partition, tp.offset))
        if tp.partition == 0 and self.seek_error is not None:
            raise KafkaException(CKError(self.seek_error))


def test_rewind_skips_a_partition_whose_fetch_has_not_started():
    cp = RealCheckpoint.__new__(RealCheckpoint)  # no producer: only the rewind
    cp._consumer = RewindConsumer(CKError._STATE)
    cp._rewind()  # partition 0 was just assigned: it starts at its committed offset anyway
    assert cp._consumer.seeks == [(0, 40), (1, 41)]
    cp._consumer = RewindConsumer(CKError._UNKNOWN_PARTITION)
    with pytest.raises(KafkaException):
        cp._rewind()
