"""Bad input: each bad record lands on the dead-letter topic with its reason and where it came from,
and the good events around it are routed, in order."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
from confluent_kafka import Producer

from router import SubscriptionStore
from router.envelope import codec, new_event
from router.kafka.admin import Topics
from tests.harness import header, read_all

CE = {"ce_specversion": b"1.0", "ce_id": b"x-1", "ce_source": b"ext", "ce_type": b"order.placed",
      "ce_tenant": b"acme"}


def ce(**changes):
    attrs = {**CE, **{f"ce_{k}": v for k, v in changes.items()}}
    return [(k, v) for k, v in attrs.items() if v is not None]


def test_bad_records_are_dead_lettered_and_the_rest_routed(bus, start_router):
    SubscriptionStore(bus).put(name="orders", tenant="acme", workflow="orders", patterns=["order.*"])
    topic = bus.events_topic("order.placed")
    Topics(bus).ensure(topic, partitions=1)
    good = lambda n: codec.encode_event(new_event("order.placed", {"n": n}, tenant="acme", source="t",
                                                  max_bytes=1 << 20))
    subscription_record = codec.encode_subscription({
        "name": "x", "tenant": "acme", "workflow": "w", "patterns": ["a.b"], "filter": None, "enabled": True,
        "updated_at": datetime.now(timezone.utc)})
    records = [  # (value, headers, expected reason or None for a good event)
        (good(0), None, None),
        (b"\xde\xad\xbe\xef garbage", None, "bad-frame"),
        (good(1), None, None),
        (subscription_record, None, "bad-avro"),
        (b'{"n": 2', ce(), "invalid-json"),
        (good(2), None, None),
        (b'{"n": 3}', ce(tenant=None), "missing-tenant"),
        (b"x" * (1024 * 1024 + 10), ce(), "oversized"),
        (orjson.dumps({"specversion": "1.0", "id": "s-1", "source": "ext", "tenant": "acme", "data": {}}),
         [("content-type", b"application/cloudevents+json")], "missing-type"),
        (b'{"n": 3}', ce(), None),  # a good binary-mode CloudEvent from an external system
        (good(4), None, None),
    ]
    producer = Producer({"bootstrap.servers": bus.bootstrap, "message.max.bytes": 3 * 1024 * 1024})
    for value, headers, _ in records:
        producer.produce(topic, value=value, headers=headers, key=b"same-partition")
    assert producer.flush(30) == 0
    start_router()

    bad = [(i, reason) for i, (_, _, reason) in enumerate(records) if reason]
    dead = read_all(bus, bus.deadletter_topic, expect=len(bad), timeout=45)
    assert [(int(header(m, "evbus-dlq-offset")), header(m, "evbus-dlq-reason")) for m in dead] == bad
    for msg in dead:
        i = int(header(msg, "evbus-dlq-offset"))
        assert header(msg, "evbus-dlq-topic") == topic and header(msg, "evbus-dlq-partition") == "0"
        assert msg.value() == records[i][0]  # the original bytes, untouched
        assert header(msg, "evbus-dlq-detail")

    routed = read_all(bus, bus.trigger_topic("orders"), expect=5, timeout=30)
    assert [codec.decode_trigger(m.value())["event"].payload()["n"] for m in routed] == [0, 1, 2, 3, 4]
