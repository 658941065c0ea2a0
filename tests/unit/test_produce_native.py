"""router/kafka/_produce.c without a broker: what it accepts, what it refuses, and where it stops.
(Delivery through it, and the checked transaction after a failure, are in tests/kafka/test_checkpoint.py.)"""

from __future__ import annotations

import sys
import threading

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
    value, header = b"v" * 100, ("h", b"1" * 20)
    records = [("t", b"k", value, [header, ("none", None)]), ("t", None, None, None),
               ("t", b"k", value, ()), ("t", b"k", value, None), ("t", b"k", value, None)]
    before = sys.getrefcount(value), sys.getrefcount(header)
    assert native.produce_all(producer, records, 0) == (3, KafkaError._QUEUE_FULL)
    assert (sys.getrefcount(value), sys.getrefcount(header)) == before  # copied, not held (nor the header list's copy)
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
def test_a_malformed_record_is_a_clear_error_and_no_record_of_the_call_is_taken(producer, record, message):
    with pytest.raises(TypeError) as info:
        transaction.native.produce_all(producer, [("t", b"k", b"ok", None), record, ("t", b"k", b"ok", None)], 0)
    assert message in str(info.value)
    assert _room(producer) == 3  # every record is checked before the first is handed over


def test_the_hand_over_lets_other_threads_run():
    """Records are handed to librdkafka with the GIL released: another thread sees the queue part-filled.
    Each attempt has a fresh producer whose records stay queued (nothing listens), so its queue holds
    between 0 and n records only while produce_all is filling it."""
    n = 200_000
    records = [("t", b"k", b"v" * 50, [("h", b"1")])] * n
    current: list = [None]
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            p = current[0]
            # only while produce_all runs, and only if it let go of the GIL (the queue length also counts
            # librdkafka's error events, such as a refused connection: a few, never n // 10)
            if p is not None and n // 10 < len(p) < n:
                seen.append(len(p))
    watcher = threading.Thread(target=watch)
    watcher.start()
    used = []
    try:
        for _ in range(3):  # a watcher that happens not to be scheduled once gets two more calls
            p = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0,
                          "queue.buffering.max.messages": n + 10})
            used.append(p)
            current[0] = p
            assert transaction.native.produce_all(p, records, 0) == (n, 0)
            current[0] = None
            if seen:
                break
    finally:
        done.set()
        watcher.join()
        for p in used:
            p.purge()
    assert seen, "no other thread ran while 200,000 records were handed over"


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
