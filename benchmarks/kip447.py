"""KIP-447 for aiokafka's transactional producer: TxnOffsetCommit v3, which carries the consumer's group
generation, member id and instance id, so the group coordinator refuses offsets from a consumer that is no
longer the group's member of that generation (a zombie). aiokafka 0.14.0 sends v0 (group id only).

`install()` replaces aiokafka's private `TxnOffsetCommitHandler` (pinned: aiokafka==0.14.0). Pass
`GroupMetadata.parse(consumer.consumer_group_metadata())` where aiokafka takes a group id: it is that str,
carrying the rest (a bare group id still gets aiokafka's own v0 request). A refusal (ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) fails the transaction with an abortable error, as librdkafka does,
instead of stopping the producer's sender.
Used by benchmarks/batching.py's what-if checkpoint; the router does not use aiokafka.
"""

from __future__ import annotations

import collections
import sys

from aiokafka import errors as Errors
from aiokafka.producer import sender as _sender
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

MAGIC = b"CGMDv2:"


class FencedInstanceIdError(Errors.BrokerResponseError):
    """Code 82, which aiokafka 0.14.0 does not know (Errors.for_code gives UnknownError)."""

    errno = 82
    message = "FENCED_INSTANCE_ID"
    description = "another consumer with the same group.instance.id has joined the group"


REFUSED = {22: Errors.IllegalGenerationError, 25: Errors.UnknownMemberIdError, 82: FencedInstanceIdError}


class GroupMetadata(str):
    """The group id (a str, as aiokafka expects), with the generation, member id and group instance id."""

    generation: int
    member_id: str
    instance_id: str | None

    @classmethod
    def parse(cls, metadata: bytes) -> "GroupMetadata":
        """librdkafka's serialized group metadata (rd_kafka_consumer_group_metadata_write): "CGMDv2:", the
        generation as a native int32, the NUL-terminated group id and member id, a byte that is 1 when the
        instance id is null, and then the NUL-terminated instance id."""
        if not metadata.startswith(MAGIC) or len(metadata) < len(MAGIC) + 7:
            raise ValueError(f"not librdkafka group metadata: {metadata[:16]!r}")
        at = len(MAGIC)
        generation = int.from_bytes(metadata[at:at + 4], sys.byteorder, signed=True)  # as the writer's machine
        fields = metadata[at + 4:].split(b"\0", 2)
        if len(fields) != 3 or not fields[2]:
            raise ValueError("truncated group metadata")
        group, member, rest = fields
        instance = None if rest[0] == 1 else rest[1:].rstrip(b"\0").decode()
        out = cls(group.decode())
        out.generation, out.member_id, out.instance_id = generation, member.decode(), instance
        return out


class TxnOffsetCommitResponse_v3(Response):
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("errors", CompactArray(  # "topics" in Kafka's schema: aiokafka's handler reads `errors`
            ("topic", CompactString("utf-8")),
            ("partition_errors", CompactArray(("partition", Int32), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("committed_offset", Int64),
                                        ("committed_leader_epoch", Int32),
                                        ("committed_metadata", CompactString("utf-8")), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest(Request[TxnOffsetCommitRequest_v3]):
    API_KEY = 28

    def __init__(self, transactional_id: str, group: GroupMetadata, producer_id: int, producer_epoch: int,
                 topics: list) -> None:
        self._args = (transactional_id, str(group), producer_id, producer_epoch, group.generation,
                      group.member_id, group.instance_id, topics)

    def build(self, request_struct_class):
        transactional_id, group, pid, epoch, generation, member, instance, topics = self._args
        return request_struct_class(
            transactional_id, group, pid, epoch, generation, member, instance,
            [(topic, [(p, offset, -1, metadata, {}) for p, offset, metadata in parts], {}) for topic, parts in topics],
            {})


class TxnOffsetCommitHandler(_sender.TxnOffsetCommitHandler):
    def create_request(self):
        if not isinstance(self._group_id, GroupMetadata):  # a bare group id: aiokafka's own v0 request
            return super().create_request()
        txn = self._sender._txn_manager
        topics = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            topics[tp.topic].append((tp.partition, offset.offset, offset.metadata))
        return TxnOffsetCommitRequest(txn.transactional_id, self._group_id, txn.producer_id, txn.producer_epoch,
                                      list(topics.items()))

    def handle_response(self, resp):
        if not isinstance(resp, TxnOffsetCommitResponse_v3):
            return super().handle_response(resp)
        errors = [(topic, [(p, code) for p, code, _ in parts]) for topic, parts, _ in resp.errors]
        for _, partitions in errors:
            for _, code in partitions:
                if code in REFUSED:  # a zombie: the transaction must abort, the producer goes on
                    error = REFUSED[code]
                    self._sender._txn_manager.error_transaction(
                        error(f"{error.message}: offsets of a stale group member refused"))
                    return None
        return super().handle_response(_V0Shape(errors))  # aiokafka's handling of every other outcome


class _V0Shape:
    """A v3 response's errors as aiokafka's handler reads a v0 one: (topic, [(partition, error code)])."""

    def __init__(self, errors: list) -> None:
        self.errors = errors


def install() -> None:
    """For the process (the what-if's router process); tests use pytest's monkeypatch on `_sender` instead."""
    _sender.TxnOffsetCommitHandler = TxnOffsetCommitHandler
