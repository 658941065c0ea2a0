"""The transaction boundary of the router: what it consumed and what it produced commit together.

`Checkpoint.commit()` does, in order:
  0. hand the transaction's records to the producer in one burst (`send()` only buffers them): every
     partition the transaction touches then joins it in one AddPartitionsToTxn round trip, where records
     trickling in over the transaction would register partitions one round trip at a time (measured: 5x
     the throughput at 200 trigger topics, docs/benchmarks.md);
  1. flush the producer; raise DeliveryFailed if anything is undelivered (the delivery callback latches
     errors), so the caller aborts and can isolate the record that cannot be delivered;
  2. send the consumer's positions with its group metadata (KIP-447: a fenced or zombie instance cannot
     commit offsets for partitions it no longer owns);
  3. commit the transaction (a retriable failure repeats the same call, as librdkafka asks);
  4. begin the next one.
`start_commit()` does 0 on the caller's thread and 1-4 on a background thread (the client's blocking calls
release the GIL) while the router routes the next batch into a new outbox; `finish_commit()` waits for it
and raises its failure. Step 0 stays on the routing thread: `produce()` holds the GIL, and a background
thread looping over it took the GIL from the router at every call that releases it (an RE2 search went
from 0.87 to 160 µs next to a busy Python thread; py-spy put 18 % of the routing thread there).
At most one commit is in flight; `commit()` is both. The consumer positions and group metadata are taken
when the commit starts, so they cover exactly the records handed over.
The routing thread waits for the commit in flight at most COMMIT_DEADLINE_S; past it the process exits
as a crash would (a librdkafka call can outlive its timeout), and the restart fences the transaction.
`abort()` aborts and, unless told otherwise, rewinds every assigned partition to its committed offset,
so the records are read and routed again in a new transaction. Errors are classified in `classify()`.

Records reach librdkafka through `_produce.c` where it is built: no per-record delivery report, so flushing
does not take the GIL once per record (confluent-kafka's report callback does, for every record produced
through it, callback or not). A record that fails then fails the transaction as a whole (an abortable
error). After any abort the next transaction is *checked*: its records go through `produce()` with a
callback, so a record that fails again is named (DeliveryFailed) and the router can isolate it.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError as CKError, KafkaException, Producer, TopicPartition

from ..errors import KafkaError
from ..metrics import COMMIT_SECONDS, TRANSACTIONS

logger = logging.getLogger(__name__)


def _bind_native():
    """router/kafka/_produce.c bound to the librdkafka confluent-kafka loaded, or None (then `produce()`).
    Only for confluent-kafka 2.x, whose Producer starts with the rd_kafka_t pointer (confluent_kafka.h)."""
    if not confluent_kafka.__version__.startswith("2."):
        return None
    try:
        from confluent_kafka import cimpl

        from . import _produce
        _produce.configure(cimpl.__file__, Producer)  # its librdkafka: found through cimpl's own dependencies
        return _produce
    except (ImportError, OSError, AttributeError):
        return None


native = _bind_native()
TIMEOUT = 45.0  # below transaction.timeout.ms (60 s): a blocked call never outlives its transaction
ATTEMPTS = 5
# How long the routing thread waits for the commit in flight. By then the coordinator has aborted the
# transaction (transaction.timeout.ms is 60 s), so nothing the commit thread still does can commit it.
# A librdkafka call may outlive the timeout it is given (send_offsets_to_transaction waits for its op
# without one, and enforces the timeout only as responses arrive): seen once, a 10-minute stall after a
# coordinator kill. Past the deadline the process exits at once, as a crash would; its restart fences the
# transaction (init_transactions) and reads from the committed offsets.
COMMIT_DEADLINE_S = 120.0
STUCK_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor restarts it
# Not the record's fault: purged by an abort or an epoch bump, or timed out. Routing it again will do.
TRANSIENT = {CKError._PURGE_QUEUE, CKError._PURGE_INFLIGHT, CKError._MSG_TIMED_OUT, CKError._TIMED_OUT}


class DeliveryFailed(Exception):
    """Records of the open transaction were not delivered; `permanent` when routing again cannot help."""

    def __init__(self, errors: list[CKError], remaining: int) -> None:
        self.errors = errors
        self.pending = 0  # records consumed in the failed transaction (set by the checkpoint)
        self.permanent = any(e.code() not in TRANSIENT and not e.retriable() for e in errors)
        summary = "; ".join(f"{e.name()}: {e.str()}" for e in errors[:3])
        super().__init__(f"{len(errors)} undelivered ({remaining} still queued): {summary or 'flush timed out'}")


class Checkpoint:
    def __init__(self, producer: Producer, consumer: Consumer, max_buffered: int = 50_000) -> None:
        self._producer = producer
        self._max_buffered = max_buffered
        self._consumer = consumer
        self._delivery_errors: list[CKError] = []
        self.pending = 0  # records consumed since the last commit
        self.opened_at = time.monotonic()
        self.generation = 0
        self.on_delivery = self._callback(0)
        self._outbox: list[tuple] = []
        self.last_commit_s = 0.0  # how long the last commit took: the router paces transactions by it
        self._inflight: threading.Thread | None = None
        self._inflight_started = 0.0
        self._inflight_error: BaseException | None = None
        # per-record delivery reports for this transaction (after an abort, or when isolating a record)
        self.checked = native is None
        _retry(lambda: self._producer.init_transactions(TIMEOUT), "init_transactions")
        self._begin()

    def _callback(self, generation: int):
        """The delivery callback for one transaction: reports of an aborted one (purged records, which
        arrive during a later flush) must not fail the next."""
        def on_delivery(err: CKError | None, msg) -> None:
            if err is not None and generation == self.generation:
                self._delivery_errors.append(err)
        return on_delivery

    def send(self, topic: str, key, value, headers) -> None:
        """Add a record to the open transaction; it reaches the producer at commit time, or sooner once
        `max_buffered` records wait (memory stays bounded; 1 hands each record over at once). The router
        appends an event's triggers to `outbox` and calls sent() once: they are handed over together, so the
        bound is max_buffered plus one event's triggers."""
        self._outbox.append((topic, key, value, headers))
        if len(self._outbox) >= self._max_buffered:  # (not through sent(): one call less per record)
            self._overflow()

    @property
    def outbox(self) -> list[tuple]:
        """The open transaction's (topic, key, value, headers) records not yet handed over: append to it,
        then call sent(), as send() does (the router appends an event's triggers at once)."""
        return self._outbox

    @property
    def max_buffered(self) -> int:
        """How many records the outbox may hold before sent() hands them over."""
        return self._max_buffered

    def sent(self) -> None:
        if len(self._outbox) >= self._max_buffered:
            self._overflow()

    def _overflow(self) -> None:
        if self._inflight is not None:
            self._join_inflight()  # the next transaction begins when the one in flight is committed
            if self._inflight_error is not None:
                return  # it failed: the next commit raises it, and the router aborts both
        self._release()

    def _release(self, outbox: list[tuple] | None = None) -> None:
        if outbox is None:
            outbox, self._outbox = self._outbox, []
        callback = self.on_delivery
        if not self.checked:
            i = 0
            while True:
                i, err = native.produce_all(self._producer, outbox, i)
                if not err:
                    return
                if err == CKError._QUEUE_FULL:
                    self._producer.poll(0.05)
                else:  # refused before sending (e.g. too large): the commit fails on it
                    callback(CKError(err), None)
                    i += 1
        for topic, key, value, headers in outbox:
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=callback)
                    break
                except BufferError:  # the local queue is full: let deliveries drain, then go on
                    self._producer.poll(0.05)
                except KafkaException as exc:  # refused before sending (e.g. too large): the commit fails on it
                    callback(exc.args[0], None)
                    break

    def _begin(self) -> None:
        self._outbox = []
        self.pending = 0
        self.opened_at = time.monotonic()
        self._open_next()

    def _open_next(self) -> None:
        """Begin the producer's next transaction, with its own delivery callback."""
        self._producer.begin_transaction()
        self.generation += 1
        self.on_delivery = self._callback(self.generation)

    def commit(self) -> None:
        self.start_commit()
        self.finish_commit()

    def start_commit(self) -> None:
        """Commit the open transaction on a background thread; what is routed meanwhile goes into the
        next one. Waits for (and raises the failure of) a commit already in flight first."""
        self.finish_commit()
        if self.pending == 0:
            return
        outbox, self._outbox = self._outbox, []
        self._release(outbox)
        positions = [tp for tp in self._consumer.position(self._consumer.assignment()) if tp.offset >= 0]
        metadata = self._consumer.consumer_group_metadata()
        pending, self.pending = self.pending, 0
        self.opened_at = time.monotonic()
        self._inflight = threading.Thread(target=self._commit_in_background, name="commit", daemon=True,
                                          args=(len(outbox), positions, metadata, pending))
        self._inflight_started = time.monotonic()
        self._inflight.start()

    @property
    def in_flight(self) -> bool:
        """A background commit is still running."""
        return self._inflight is not None and self._inflight.is_alive()

    @property
    def commit_settled(self) -> bool:
        """A background commit has ended (well or not) and waits for finish_commit()."""
        return self._inflight is not None and not self._inflight.is_alive()

    def finish_commit(self) -> None:
        if self._inflight is None:
            return
        self._join_inflight()
        self._inflight = None
        error, self._inflight_error = self._inflight_error, None
        if error is not None:
            raise error

    def _join_inflight(self) -> None:
        """Wait for the commit thread, up to COMMIT_DEADLINE_S from when it started; then exit the process."""
        self._inflight.join(max(0.0, self._inflight_started + COMMIT_DEADLINE_S - time.monotonic()))
        if self._inflight.is_alive():
            logger.critical("the commit in flight has not ended after %.0f s (stuck in the Kafka client); "
                            "exiting for a restart, which fences its transaction", COMMIT_DEADLINE_S)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(STUCK_EXIT_CODE)  # not sys.exit: the client's threads could hold the interpreter's exit

    def _commit_in_background(self, records, positions, metadata, pending: int) -> None:
        started = time.monotonic()
        try:
            remaining = self._producer.flush(TIMEOUT)
            if remaining or self._delivery_errors:
                failed = DeliveryFailed(list(self._delivery_errors), remaining)
                failed.pending = pending
                raise failed
            flushed = time.monotonic()
            _retry(lambda: self._producer.send_offsets_to_transaction(positions, metadata, TIMEOUT), "send_offsets")
            offsets = time.monotonic()
            _retry(lambda: self._producer.commit_transaction(TIMEOUT), "commit_transaction")
            ended = time.monotonic()
            self.last_commit_s = ended - started
            self.checked = native is None
            TRANSACTIONS.labels("commit").inc()
            COMMIT_SECONDS.labels("produce").observe(flushed - started)
            COMMIT_SECONDS.labels("offsets").observe(offsets - flushed)
            COMMIT_SECONDS.labels("commit").observe(ended - offsets)
            logger.debug("committed %d records, %d consumed: produce %.1f ms, offsets %.1f ms, commit %.1f ms",
                         records, pending, (flushed - started) * 1e3, (offsets - flushed) * 1e3,
                         (ended - offsets) * 1e3)
            self._open_next()  # the router's thread fills the outbox meanwhile: only the producer side here
        except BaseException as exc:  # handed to the router's thread by finish_commit()
            self._inflight_error = exc

    def abort(self, rewind: bool = True) -> None:
        """Abort the open transaction; rewind every assigned partition to its committed offset (what
        was routed since a failed commit started is discarded with it and read again)."""
        try:
            self.finish_commit()
        except Exception as exc:  # the commit in flight failed too: it is what is being aborted
            logger.warning("the commit in flight failed: %s", exc)
        try:
            _retry(lambda: self._producer.abort_transaction(TIMEOUT), "abort_transaction")
        finally:
            TRANSACTIONS.labels("abort").inc()
            self._delivery_errors = []  # after the abort: it purges the queue and calls back with errors
        self.checked = True  # whatever failed, the next transaction names the record that fails again
        try:
            if rewind:
                self._rewind()
        finally:
            self._begin()

    def _rewind(self) -> None:
        assignment = self._consumer.assignment()
        if not assignment:
            return
        for tp in self._consumer.committed(assignment, timeout=TIMEOUT):
            if tp.error is not None:
                raise KafkaException(tp.error)
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING  # nothing committed yet
            try:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                if exc.args[0].code() != CKError._STATE:
                    raise
                # just assigned, its fetch not started yet: it starts at the committed offset anyway
        logger.warning("transaction aborted; rewound %d partitions to their committed offsets", len(assignment))


def _retry(call, what: str):
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except KafkaException as exc:
            if classify(exc) != "retry" or attempt == ATTEMPTS:
                raise
            logger.warning("%s failed (attempt %d/%d, retrying): %s", what, attempt, ATTEMPTS, exc)
            time.sleep(min(2.0, 0.1 * 2 ** attempt))


def classify(exc: KafkaException) -> str:
    """'retry' (the same call again), 'abort' (abort and rewind) or 'fatal' (stop; a supervisor restarts)."""
    err = exc.args[0] if exc.args else None
    if not isinstance(err, CKError):
        return "fatal"
    if err.fatal() or err.code() in (CKError._FENCED, CKError.PRODUCER_FENCED, CKError.INVALID_PRODUCER_EPOCH):
        return "fatal"
    if err.retriable():
        return "retry"
    if err.txn_requires_abort():
        return "abort"
    return "fatal"


def fatal(exc: BaseException) -> KafkaError:
    return KafkaError(f"unrecoverable Kafka error, stopping: {exc}")
