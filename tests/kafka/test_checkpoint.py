"""The router's transaction boundary on a real broker: records handed over through router/kafka/_produce.c
arrive as they were sent, and a record the cluster refuses fails its transaction, after which the checked
transaction names it (the router then isolates and dead-letters it: tests/kafka/test_dead_letters.py)."""

from __future__ import annotations

import os
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from router.kafka import clients
from router.kafka.admin import Topics
from router.kafka.transaction import Checkpoint, DeliveryFailed, native
from tests.harness import read_all


@pytest.fixture
def checkpoint(bus):
    """A Checkpoint over a consumer that has read one record (so there is a position to commit)."""
    source = bus.events_topic("check.point")
    Topics(bus).ensure(source, partitions=1)
    seed = Producer({"bootstrap.servers": bus.bootstrap})
    seed.produce(source, b"x")
    assert seed.flush(30) == 0
    consumer = clients.consumer(bus, f"{bus.namespace}cp")
    consumer.subscribe([source])
    while (msg := consumer.poll(1.0)) is None or msg.error():
        pass
    producer = clients.producer(bus, transactional_id=f"cp-{uuid.uuid4().hex[:8]}")
    cp = Checkpoint(producer, consumer)
    yield cp
    consumer.close()


@pytest.mark.parametrize("checked", [False, True], ids=["c-path", "produce-path"])
def test_records_arrive_as_they_were_sent(bus, checkpoint, checked):
    assert native is not None
    out = bus.trigger_topic(f"out-{checked}")
    Topics(bus).ensure(out, partitions=2)
    sent = [(f"k{i % 5}".encode() if i % 7 else None, bytes([i % 256]) * (i * 37 % 500) if i % 11 else None,
             [("n", str(i).encode()), ("empty", b""), ("none", None)] if i % 3 else None) for i in range(300)]
    checkpoint.checked = checked
    for key, value, headers in sent:
        checkpoint.send(out, key, value, headers)
    checkpoint.pending = 1
    checkpoint.commit()
    got = read_all(bus, out, expect=len(sent), timeout=30)
    assert len(got) == len(sent)
    seen = sorted(((m.key(), m.value(), m.headers()) for m in got), key=repr)
    want = sorted(((k, v, h) for k, v, h in sent), key=repr)
    assert seen == want


def test_records_for_many_topics_each_named_by_its_own_str_reach_their_topics(bus, checkpoint):
    """The C hand-over keeps a topic handle per topic name for the call: more topics than its first table
    holds (it grows), and equal names in distinct str objects, as a transaction over every workflow has."""
    from confluent_kafka.admin import AdminClient, NewTopic
    prefix = bus.trigger_topic("many-")
    names = [f"{prefix}{i}" for i in range(300)]
    admin = AdminClient({"bootstrap.servers": bus.bootstrap})  # kept until the topics are made
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    for f in futures.values():
        f.result(60)
    sent = []
    for i in range(900):
        topic = "".join([prefix, str(i % 300)])  # a new str every time
        sent.append((topic, f"{topic}/{i}".encode()))
        checkpoint.send(topic, None, sent[-1][1], None)
    assert len({id(t) for t, _ in sent}) > 300
    checkpoint.pending = 1
    checkpoint.commit()
    got = read_all(bus, f"^{prefix.replace('.', '[.]')}[0-9]+$", expect=len(sent), timeout=60)
    assert sorted((m.topic(), m.value()) for m in got) == sorted(sent)


def test_records_appended_to_the_outbox_are_handed_over_once_max_buffered_wait(bus, checkpoint):
    """The router appends an event's triggers to the outbox at once, then calls sent(): memory stays bounded
    by max_buffered (plus one event's triggers), and nothing handed over early is lost or doubled."""
    checkpoint._max_buffered = 50
    out = bus.trigger_topic("buffered")
    Topics(bus).ensure(out, partitions=1)
    sent = []
    for i in range(40):
        records = [(out, b"k", f"{i}-{j}".encode(), [("n", b"1")]) for j in range(3)]
        checkpoint.outbox.extend(records)
        checkpoint.sent()
        sent += records
        assert len(checkpoint.outbox) < 50
    checkpoint.pending = 1
    checkpoint.commit()
    got = read_all(bus, out, expect=len(sent), timeout=30)
    assert sorted(m.value() for m in got) == sorted(r[2] for r in sent)


def test_a_refused_record_fails_its_transaction_then_the_checked_one_names_it(bus, checkpoint):
    small = bus.trigger_topic("small")
    Topics(bus).ensure(small, partitions=1, config={"max.message.bytes": "4096"})
    big = os.urandom(10_000)  # incompressible: over the topic's 4 KB after lz4 too
    assert not checkpoint.checked  # the C path: no per-record report
    checkpoint.send(small, b"k", b"fine", None)
    checkpoint.send(small, b"k", big, None)
    checkpoint.pending = 1
    with pytest.raises(KafkaException) as info:
        checkpoint.commit()
    assert not isinstance(info.value, DeliveryFailed)
    assert info.value.args[0].txn_requires_abort()
    checkpoint.abort(rewind=False)
    assert checkpoint.checked  # the next transaction reports each record
    checkpoint.send(small, b"k", b"fine", None)
    checkpoint.send(small, b"k", big, None)
    checkpoint.pending = 1
    with pytest.raises(DeliveryFailed) as failed:
        checkpoint.commit()
    assert failed.value.permanent
    assert {e.code() for e in failed.value.errors} == {KafkaError.MSG_SIZE_TOO_LARGE}  # its batch fails with it
    checkpoint.abort(rewind=False)
    for attempt in range(3):  # the abort bumps the producer's epoch: the next record may be purged once
        checkpoint.send(small, b"k", b"fine", None)
        checkpoint.pending = 1
        try:
            checkpoint.commit()
            break
        except DeliveryFailed as exc:
            assert not exc.permanent and attempt < 2, exc
            checkpoint.abort(rewind=False)
    assert not checkpoint.checked  # a commit that went through: back to the C path
    assert [m.value() for m in read_all(bus, small, expect=1, timeout=30)] == [b"fine"]
