"""benchmarks/kip447.py reads librdkafka's serialized group metadata (what TxnOffsetCommit v3 needs)."""

from __future__ import annotations

import sys

import pytest
from confluent_kafka import Consumer

from benchmarks.kip447 import GroupMetadata


def _written(generation: int, group: bytes, member: bytes, instance: bytes | None) -> bytes:
    """As rd_kafka_consumer_group_metadata_write lays it out (the generation a native int32)."""
    tail = b"\x01" if instance is None else b"\x00" + instance + b"\0"
    return b"CGMDv2:" + generation.to_bytes(4, sys.byteorder, signed=True) + group + b"\0" + member + b"\0" + tail


def test_reads_a_static_members_metadata():
    meta = GroupMetadata.parse(_written(7, b"evbus-router", b"rdkafka-1234", b"router-a"))
    assert meta == "evbus-router" and isinstance(meta, str)
    assert (meta.generation, meta.member_id, meta.instance_id) == (7, "rdkafka-1234", "router-a")


def test_reads_a_dynamic_member_and_a_negative_generation():
    meta = GroupMetadata.parse(_written(-1, b"g", b"", None))
    assert (str(meta), meta.generation, meta.member_id, meta.instance_id) == ("g", -1, "", None)


def test_reads_what_librdkafka_writes():
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:9", "group.id": "kip447-unit"})
    try:
        meta = GroupMetadata.parse(consumer.consumer_group_metadata())
    finally:
        consumer.close()
    assert (str(meta), meta.generation, meta.member_id, meta.instance_id) == ("kip447-unit", -1, "", None)


def test_reads_a_static_member_as_librdkafka_writes_it():
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:9", "group.id": "kip447-unit",
                         "group.instance.id": "router-a"})
    try:
        meta = GroupMetadata.parse(consumer.consumer_group_metadata())
    finally:
        consumer.close()
    assert (str(meta), meta.generation, meta.member_id, meta.instance_id) == ("kip447-unit", -1, "", "router-a")


@pytest.mark.parametrize("bad", [b"", b"CGMDv1:\0\0\0\0g\0m\0\x01", b"CGMDv2:\0\0\0\0g\0", b"CGMDv2:\0\0"])
def test_refuses_what_it_cannot_read(bad):
    with pytest.raises(ValueError):
        GroupMetadata.parse(bad)
