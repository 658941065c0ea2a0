"""benchmarks/kip447.py on a real broker: the what-if checkpoint's offsets carry the group generation, so the
coordinator refuses those of a member a rebalance has left behind (a zombie), the transaction aborts, and
the producer goes on to commit with the current generation."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.producer import sender
from aiokafka.structs import TopicPartition as AioTP
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks import kip447
from router.kafka.admin import Topics


def _member(bus, topic: str, group: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bus.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    return consumer


def test_offsets_of_a_stale_generation_are_refused(bus, monkeypatch):
    monkeypatch.setattr(sender, "TxnOffsetCommitHandler", kip447.TxnOffsetCommitHandler)  # kip447.install()
    topic, group = bus.events_topic("kip.fence"), f"{bus.namespace}kip447"
    Topics(bus).ensure(topic, partitions=2)
    seed = Producer({"bootstrap.servers": bus.bootstrap})
    for i in range(10):
        seed.produce(topic, b"x", partition=i % 2)
    assert seed.flush(30) == 0
    a = _member(bus, topic, group)
    deadline = time.monotonic() + 30
    while not a.assignment() and time.monotonic() < deadline:
        a.poll(0.2)
    old = kip447.GroupMetadata.parse(a.consumer_group_metadata())
    assert old.generation >= 1 and old.member_id
    b = _member(bus, topic, group)

    async def commit(producer, meta, offset: int) -> str:
        await producer.begin_transaction()
        try:
            await producer.send_offsets_to_transaction({AioTP(topic, 0): offset}, meta)
            await producer.commit_transaction()
            return "committed"
        except Exception as exc:  # the refusal: abort, as the router does
            await producer.abort_transaction()
            return type(exc).__name__

    async def run() -> tuple[str, str, str, str]:
        producer = AIOKafkaProducer(bootstrap_servers=bus.bootstrap, enable_idempotence=True,
                                    transactional_id=f"{bus.namespace}kip447-{uuid.uuid4().hex[:6]}")
        await producer.start()
        try:
            first = await commit(producer, old, 3)
            until = time.monotonic() + 30  # b joins: a new generation, a's old metadata is stale
            while not (a.assignment() and b.assignment()) and time.monotonic() < until:
                a.poll(0.1)
                b.poll(0.1)
            new = kip447.GroupMetadata.parse(a.consumer_group_metadata())
            assert new.generation > old.generation
            stale, fresh = await commit(producer, old, 5), await commit(producer, new, 6)
            return first, stale, fresh, await commit(producer, group, 7)  # a bare group id: aiokafka's v0
        finally:
            await producer.stop()

    try:
        first, stale, fresh, bare = asyncio.run(run())
    finally:
        b.close()
        a.close()
    assert (first, stale, fresh, bare) == ("committed", "IllegalGenerationError", "committed", "committed")
    reader = Consumer({"bootstrap.servers": bus.bootstrap, "group.id": group})
    try:
        assert reader.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == 7
    finally:
        reader.close()
