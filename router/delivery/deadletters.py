"""A workflow's dead letters (`triggers.<workflow>.dlq`): written with their context, listed, redriven.

A dead letter is the original trigger record (value, key, headers) plus `evbus-dlq-*` headers: reason,
subscription, workflow, error type and message, attempts, first and last failure time, the trigger's
topic/partition/offset. Redrive writes the trigger back to `triggers.<workflow>` as it was (same value,
hence the same idempotency key) and, in the same transaction, a marker record on the dead-letter topic
(`evbus-dlq-redriven-of: partition:offset`, no value), so a dead letter is redriven once, and `list` says
which ones were.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from ..config import Settings
from ..errors import KafkaError
from ..kafka import clients
from ..kafka.admin import Topics

PREFIX = "evbus-dlq-"
REDRIVEN_OF = PREFIX + "redriven-of"
REDRIVEN_FROM = "evbus-redriven-from"


def dlq_topic(settings: Settings, workflow: str) -> str:
    return settings.trigger_topic(workflow) + ".dlq"


def context_headers(*, reason: str, workflow: str, subscription: str, error_type: str, error: str,
                    attempts: int, first_failure: datetime | None, last_failure: datetime | None,
                    topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    def iso(t: datetime | None) -> bytes:
        return (t.isoformat() if t else "").encode()
    return [(PREFIX + "reason", reason.encode()), (PREFIX + "workflow", workflow.encode()),
            (PREFIX + "subscription", subscription.encode()), (PREFIX + "error-type", error_type.encode()),
            (PREFIX + "error", error[:4000].encode()), (PREFIX + "attempts", str(attempts).encode()),
            (PREFIX + "first-failure", iso(first_failure)), (PREFIX + "last-failure", iso(last_failure)),
            (PREFIX + "topic", topic.encode()), (PREFIX + "partition", str(partition).encode()),
            (PREFIX + "offset", str(offset).encode()),
            (PREFIX + "time", datetime.now(timezone.utc).isoformat().encode())]


@dataclass
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    redriven: bool = False

    def context(self, name: str) -> str:
        for k, v in self.headers:
            if k == PREFIX + name:
                return v.decode(errors="replace") if v is not None else ""
        return ""

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(PREFIX) and k != REDRIVEN_FROM]

    @property
    def last_failure(self) -> datetime | None:
        text = self.context("last-failure") or self.context("time")
        return datetime.fromisoformat(text) if text else None

    def summary(self) -> dict[str, Any]:
        attempts = self.context("attempts")
        return {"id": self.id, "reason": self.context("reason"), "subscription": self.context("subscription"),
                "workflow": self.context("workflow"), "error_type": self.context("error-type"),
                "error": self.context("error"), "attempts": int(attempts) if attempts.isdigit() else None,
                "first_failure": self.context("first-failure") or None,
                "last_failure": self.context("last-failure") or None,
                "trigger": f"{self.context('topic')}[{self.context('partition')}]@{self.context('offset')}",
                "idempotency_key": _header(self.headers, "evbus-idempotency-key"), "redriven": self.redriven}

    def detail(self) -> dict[str, Any]:
        from ..envelope import codec  # the trigger itself, decoded for people
        out = self.summary()
        out["headers"] = {k: v.decode(errors="replace") if v is not None else None for k, v in self.headers}
        try:
            record = codec.decode_trigger(self.value)
            out["event"] = record["event"].to_dict()
        except Exception as exc:  # an undecodable trigger is dead-lettered too; show why
            out["event"] = None
            out["undecodable"] = str(exc)
        return out


def _header(headers, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v.decode(errors="replace") if v is not None else None
    return None


def read(settings: Settings, workflow: str, timeout: float = 60.0) -> list[DeadLetter]:
    """Every dead letter of a workflow, in partition/offset order, each marked if already redriven."""
    topic = dlq_topic(settings, workflow)
    letters: list[DeadLetter] = []
    redriven: set[str] = set()
    for msg in scan(settings, topic, timeout):
        headers = list(msg.headers() or [])
        marker = _header(headers, REDRIVEN_OF)
        if marker is not None:
            redriven.add(marker)
            continue
        letters.append(DeadLetter(msg.partition(), msg.offset(), msg.key(), msg.value(), headers))
    for letter in letters:
        letter.redriven = letter.id in redriven
    return letters


def scan(settings: Settings, topic: str, timeout: float = 60.0) -> Iterator:
    """Every committed record of `topic`, all partitions, up to their ends as of now."""
    if topic not in Topics(settings).list():
        raise KafkaError(f"no topic {topic}: no dead letters were ever written for that workflow")
    consumer = clients.consumer(settings, f"evbus.dlq-reader.{uuid.uuid4().hex[:8]}")
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise KafkaError(f"{topic} not read to its end within {timeout:.0f}s")
            for msg in consumer.consume(500, 0.2):
                if msg.error():
                    raise KafkaError(f"{topic}: {msg.error()}")
                yield msg
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            for tp in positions:
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    except KafkaException as exc:
        raise KafkaError(f"cannot read {topic}: {exc}") from None
    finally:
        consumer.close()


def select(letters: Iterable[DeadLetter], *, subscription: str | None = None, error: str | None = None,
           since: datetime | None = None, until: datetime | None = None,
           include_redriven: bool = False) -> list[DeadLetter]:
    out = []
    for letter in letters:
        if letter.redriven and not include_redriven:
            continue
        if subscription and letter.context("subscription") != subscription:
            continue
        if error and error.lower() not in (letter.context("error-type") + ": " + letter.context("error")).lower():
            continue
        when = letter.last_failure
        if (since and (when is None or when < since)) or (until and (when is None or when > until)):
            continue
        out.append(letter)
    return out


def redrive(settings: Settings, workflow: str, letters: list[DeadLetter],
            progress: Callable[[int], None] = lambda n: None, per_transaction: int = 500) -> int:
    """Write each dead letter's trigger back to `triggers.<workflow>` with a redriven marker, in
    transactions: a crash mid-way redrives nothing twice and loses nothing."""
    topic, dlq = settings.trigger_topic(workflow), dlq_topic(settings, workflow)
    producer = clients.producer(settings, transactional_id=f"evbus-redrive-{settings.namespace}{workflow}")
    errors: list = []
    try:
        producer.init_transactions(30)
        for start in range(0, len(letters), per_transaction):
            chunk = letters[start:start + per_transaction]
            producer.begin_transaction()
            for letter in chunk:
                headers = letter.original_headers + [(REDRIVEN_FROM, f"{dlq}[{letter.partition}]@{letter.offset}"
                                                      .encode())]
                _produce(producer, topic, letter.key, letter.value, headers, errors)
                _produce(producer, dlq, letter.key, None, [(REDRIVEN_OF, letter.id.encode())], errors)
            if producer.flush(60) or errors:
                producer.abort_transaction(30)
                raise KafkaError(f"redrive of {len(chunk)} dead letters not acknowledged: {errors[:3]}")
            producer.commit_transaction(60)
            progress(len(chunk))
    except KafkaException as exc:
        raise KafkaError(f"redrive failed (what was committed stays redriven, the rest is not): {exc}") from None
    return len(letters)


def _produce(producer, topic, key, value, headers, errors) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers,
                             on_delivery=lambda err, _m: err and errors.append(err))
            return
        except BufferError:
            producer.poll(0.1)
