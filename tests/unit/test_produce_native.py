"""router/kafka/_produce.c without a broker: what it accepts, what it refuses, and where it stops.
(Delivery through it, and the checked transaction after a failure, are in tests/kafka/test_checkpoint.py.)"""

from __future__ import annotations

import sys

import pytest
from confluent_kafka import KafkaError, Producer

from router.kafka import transaction


def _room(producer) -> int:
    """How many more records the producer's queue takes (of the 3 it holds)."""
    index, err = transaction.native.produce_all(producer, [("t", b"k", b"probe", None)] * 4, 0)
    assert err == KafkaError._QUEUE_FULL
    return index


@pytest.fixture
def producer():
    # Nothing listens on port 1: records stay in the local queue, which is what these tests look at.
    p = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0, "message.max.bytes": 10_000,
                  "queue.buffering.max.messages": 3})
    yield p
    p.purge()


def test_the_c_producer_is_built_and_bound():
    assert transaction.native is not None, \
        "router/kafka/_produce.c was not compiled or not bound to librdkafka: run `make install`"


def test_records_are_taken_until_the_queue_is_full(producer):
    native = transaction.native
    value = b"v" * 100
    records = [("t", b"k", value, [("h", b"1"), ("none", None)]), ("t", None, None, None),
               ("t", b"k", value, ()), ("t", b"k", value, None), ("t", b"k", value, None)]
    before = sys.getrefcount(value)
    assert native.produce_all(producer, records, 0) == (3, KafkaError._QUEUE_FULL)
    assert sys.getrefcount(value) == before  # copied, not held
    producer.purge()
    producer.poll(0)  # purged records leave the queue once their reports are served
    assert native.produce_all(producer, records, 3) == (5, 0)  # from where it stopped
    assert _room(producer) == 1


def test_a_record_librdkafka_refuses_is_named_by_its_index(producer):
    records = [("t", b"k", b"small", None), ("t", b"k", b"x" * 20_000, None), ("t", b"k", b"small", None)]
    index, err = transaction.native.produce_all(producer, records, 0)
    assert (index, err) == (1, KafkaError.MSG_SIZE_TOO_LARGE)
    assert _room(producer) == 2


@pytest.mark.parametrize("record, message", [
    (("t", "text", b"v", None), "record 1: the key must be bytes or None, not str"),
    (("t", b"k", 3, None), "record 1: the value must be bytes or None, not int"),
    (("t", b"k", b"v", [("h", "text")]), "record 1: a header value must be bytes or None, not str"),
    (("t", b"k", b"v", [(b"h", b"v")]), "record 1: a header must be a (str, bytes) tuple"),
    (("t", b"k", b"v", 7), "record 1: headers must be a list or tuple"),
    (("t", b"k", b"v", (h for h in [("h", b"v")])), "record 1: headers must be a list or tuple"),
    (("t", b"k", b"v"), "record 1: a (topic, key, value, headers) tuple is needed"),
    ((b"t", b"k", b"v", None), "record 1: a (topic, key, value, headers) tuple is needed"),
])
def test_a_malformed_record_is_a_clear_error_and_nothing_after_it_is_taken(producer, record, message):
    with pytest.raises(TypeError) as info:
        transaction.native.produce_all(producer, [("t", b"k", b"ok", None), record, ("t", b"k", b"ok", None)], 0)
    assert message in str(info.value)
    assert _room(producer) == 2


def test_only_a_confluent_kafka_producer_is_accepted():
    with pytest.raises(TypeError, match="Producer is needed"):
        transaction.native.produce_all(object(), [], 0)


def test_binding_needs_a_loaded_library(tmp_path):
    from confluent_kafka import Producer as P
    missing = tmp_path / "not-loaded.so"
    missing.write_bytes(b"")
    with pytest.raises(ImportError, match="is not loaded"):
        transaction.native.configure(str(missing), P)
    transaction.native.configure(__import__("confluent_kafka.cimpl").cimpl.__file__, P)  # bound again as before
