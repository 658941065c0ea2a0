"""Bad input: each bad record lands on the dead-letter topic with its reason and where it came from,
and the good events around it are routed, in order."""

from __future__ import annotations

import base64
import os
from datetime import datetime, timezone

import orjson
from confluent_kafka import Producer

from router import Publisher, SubscriptionStore
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
    subscription_record = codec._write(codec.WRITERS["subscription"][1], {  # framed as version 1, like events
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
    dead = sorted(read_all(bus, bus.deadletter_topic, expect=len(bad), timeout=45),
                  key=lambda m: int(header(m, "evbus-dlq-offset")))
    assert [(int(header(m, "evbus-dlq-offset")), header(m, "evbus-dlq-reason")) for m in dead] == bad
    for msg in dead:
        i = int(header(msg, "evbus-dlq-offset"))
        assert header(msg, "evbus-dlq-topic") == topic and header(msg, "evbus-dlq-partition") == "0"
        assert msg.value() == records[i][0]  # the original bytes, untouched
        assert header(msg, "evbus-dlq-detail")

    routed = read_all(bus, bus.trigger_topic("orders"), expect=5, timeout=30)
    assert [codec.decode_trigger(m.value())["event"].payload()["n"] for m in routed] == [0, 1, 2, 3, 4]


def test_structured_event_nested_too_deep_and_a_record_too_big_to_keep(bus, start_router):
    SubscriptionStore(bus).put(name="orders", tenant="acme", workflow="orders", patterns=["order.*"])
    topic = bus.events_topic("order.placed")
    Topics(bus).ensure(topic, partitions=1)
    deep = b'{"specversion":"1.0","id":"d","source":"s","type":"order.placed","tenant":"acme","data":' \
        + b"[" * 300 + b"]" * 300 + b"}"
    huge = b"x" * (2 * 1024 * 1024 + 512 * 1024)  # over the dead-letter value limit, under the broker's
    producer = Producer({"bootstrap.servers": bus.bootstrap, "message.max.bytes": 3 * 1024 * 1024})
    producer.produce(topic, value=deep, headers=[("content-type", b"application/cloudevents+json")])
    producer.produce(topic, value=huge)
    producer.produce(topic, value=codec.encode_event(new_event("order.placed", {"n": 1}, tenant="acme", source="t",
                                                                max_bytes=1 << 20)))
    assert producer.flush(30) == 0
    start_router()
    dead = sorted(read_all(bus, bus.deadletter_topic, expect=2, timeout=45),
                  key=lambda m: int(header(m, "evbus-dlq-offset")))
    assert [header(m, "evbus-dlq-reason") for m in dead] == ["invalid-json", "oversized"]
    assert dead[0].value() == deep
    assert dead[1].value() is None and header(dead[1], "evbus-dlq-value-dropped") == str(len(huge))
    assert len(read_all(bus, bus.trigger_topic("orders"), expect=1, timeout=30)) == 1


def test_a_trigger_the_cluster_refuses_is_isolated_and_dead_lettered(bus, start_router):
    """The trigger topic takes at most 4 KB per record: the big event's trigger cannot be delivered. Its
    transaction aborts, its records are routed again one per transaction, and only it is dead-lettered."""
    store = SubscriptionStore(bus)
    Topics(bus).ensure(bus.trigger_topic("small"), config={"max.message.bytes": "4096"})
    store.put(name="small", tenant="acme", workflow="small", patterns=["order.*"])
    with Publisher(bus) as pub:
        pad = base64.b64encode(os.urandom(15_000)).decode()  # incompressible: lz4 cannot shrink it under 4 KB
        ids = [pub.publish("order.placed", {"n": n, "pad": pad if n == 5 else ""}, tenant="acme", key="k")
               for n in range(10)]
    start_router()
    routed = read_all(bus, bus.trigger_topic("small"), expect=9, timeout=60)
    assert [codec.decode_trigger(m.value())["event"].payload()["n"] for m in routed] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    dead = read_all(bus, bus.deadletter_topic, expect=1, timeout=30)
    assert [header(m, "evbus-dlq-reason") for m in dead] == ["undeliverable"]
    assert "MSG_SIZE_TOO_LARGE" in header(dead[0], "evbus-dlq-detail")
    assert codec.decode_event(dead[0].value()).id == ids[5]
