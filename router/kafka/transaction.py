"""The transaction boundary of the router: what it consumed and what it produced commit together.

`Checkpoint.commit()` does, in order:
  1. flush the producer; fail if anything is undelivered (errors are latched by the delivery callback);
  2. send the consumer's positions with its group metadata (KIP-447: a fenced or zombie instance cannot
     commit offsets for partitions it no longer owns);
  3. commit the transaction;
  4. begin the next one.
On an abortable error the caller calls `abort()`, which aborts and rewinds the consumer to its committed
offsets, so the records are read and routed again in a new transaction.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError as CKError, KafkaException, Producer, TopicPartition

from ..errors import KafkaError
from ..metrics import TRANSACTIONS

logger = logging.getLogger(__name__)


class Checkpoint:
    def __init__(self, producer: Producer, consumer: Consumer, timeout: float = 30.0) -> None:
        self._producer = producer
        self._consumer = consumer
        self._timeout = timeout
        self._delivery_errors: list[str] = []
        self.pending = 0  # records consumed since the last commit
        self.opened_at = time.monotonic()
        self._producer.init_transactions(timeout)
        self._begin()

    def on_delivery(self, err: CKError | None, msg) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def _begin(self) -> None:
        self._producer.begin_transaction()
        self.pending = 0
        self.opened_at = time.monotonic()

    def commit(self) -> None:
        if self.pending == 0:
            return
        remaining = self._producer.flush(self._timeout)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise KafkaException(CKError(CKError._INVALID_ARG if not errors else CKError._MSG_TIMED_OUT,
                                         f"undelivered before commit: {remaining} queued, errors {errors[:3]}",
                                         txn_requires_abort=True))
        positions = [tp for tp in self._consumer.position(self._consumer.assignment()) if tp.offset >= 0]
        self._producer.send_offsets_to_transaction(positions, self._consumer.consumer_group_metadata(),
                                                   self._timeout)
        self._producer.commit_transaction(self._timeout)
        TRANSACTIONS.labels("commit").inc()
        self._begin()

    def abort(self) -> None:
        """Abort the open transaction and rewind every assigned partition to its committed offset."""
        self._delivery_errors = []
        try:
            self._producer.abort_transaction(self._timeout)
        finally:
            TRANSACTIONS.labels("abort").inc()
        assignment = self._consumer.assignment()
        if assignment:
            for tp in self._consumer.committed(assignment, timeout=self._timeout):
                offset = tp.offset if tp.offset >= 0 else -2  # OFFSET_BEGINNING when nothing committed
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        logger.warning("transaction aborted; rewound %d partitions to committed offsets", len(assignment))
        self._begin()


def classify(exc: KafkaException) -> str:
    """'abort' (abort and rewind), 'retry' (same call again) or 'fatal' (stop; a supervisor restarts)."""
    err = exc.args[0] if exc.args else None
    if not isinstance(err, CKError):
        return "fatal"
    if err.fatal() or err.code() in (CKError._FENCED, CKError.PRODUCER_FENCED, CKError.INVALID_PRODUCER_EPOCH):
        return "fatal"
    if err.txn_requires_abort():
        return "abort"
    if err.retriable():
        return "retry"
    return "fatal"


def fatal(exc: KafkaException) -> KafkaError:
    return KafkaError(f"unrecoverable Kafka error, stopping: {exc}")
