"""The routing thread's wait for the commit in flight is bounded (router.kafka.transaction.COMMIT_DEADLINE_S):
past it the process exits, as a crash would, and its restart fences the transaction. A client call that
outlives its own timeout (seen once in the chaos run: send_offsets_to_transaction for 10 minutes) then
costs a restart, not a stall. No broker: a producer whose flush blocks until released."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import TopicPartition

from router.kafka import transaction


class Producer:
    def __init__(self, flush_s: float) -> None:
        self.flush_s, self.released = flush_s, threading.Event()
        self.calls: list[str] = []

    def init_transactions(self, timeout):
        self.calls.append("init")

    def begin_transaction(self):
        self.calls.append("begin")

    def flush(self, timeout):
        self.released.wait(self.flush_s)
        self.calls.append("flush")
        return 0

    def send_offsets_to_transaction(self, positions, metadata, timeout):
        self.calls.append("offsets")

    def commit_transaction(self, timeout):
        self.calls.append("commit")


class Consumer:
    def assignment(self):
        return [TopicPartition("t.events.x", 0)]

    def position(self, partitions):
        return [TopicPartition("t.events.x", 0, 7)]

    def consumer_group_metadata(self):
        return object()


class Exited(Exception):
    pass


@pytest.fixture
def exits(monkeypatch):
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited(code)

    monkeypatch.setattr(transaction.os, "_exit", fake_exit)
    monkeypatch.setattr(transaction, "COMMIT_DEADLINE_S", 0.3)
    return codes


def checkpoint(producer: Producer) -> transaction.Checkpoint:
    cp = transaction.Checkpoint(producer, Consumer())
    cp.checked = True  # records through produce(): the fake producer has no librdkafka handle
    cp.pending = 1
    return cp


def test_a_commit_stuck_past_the_deadline_exits_the_process(exits, caplog):
    producer = Producer(flush_s=30)
    cp = checkpoint(producer)
    cp.start_commit()
    with pytest.raises(Exited):
        cp.finish_commit()
    assert exits == [transaction.STUCK_EXIT_CODE]
    assert "has not ended after" in caplog.text
    producer.released.set()


def test_a_commit_that_ends_in_time_goes_on(exits):
    producer = Producer(flush_s=0.05)
    cp = checkpoint(producer)
    cp.start_commit()
    cp.finish_commit()
    assert exits == []
    assert producer.calls == ["init", "begin", "flush", "offsets", "commit", "begin"]
