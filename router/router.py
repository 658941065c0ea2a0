"""The routing loop: poll → decode → match → produce → maybe commit, all inside Kafka transactions.

One consumer group over every `events.*` topic (a regex subscription, so a new domain is picked up on
the next metadata refresh). Per event: tenant scope → pattern → filter → one trigger per matching
subscription on `triggers.<workflow>`, keyed by the event's key. A record that is not a valid event goes
to the dead-letter topic, in the same transaction, with headers saying why and where it came from.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from contextlib import ExitStack
from datetime import datetime, timezone

from confluent_kafka import KafkaException, Message

from . import metrics
from .config import Settings
from .envelope import codec, decode
from .envelope.cloudevents import Decoded
from .errors import DecodeError
from .kafka import clients
from .kafka.admin import Topics
from .kafka.transaction import Checkpoint, classify, fatal
from .matching.index import MatchResult
from .ratelimit import LogLimiter
from .subscriptions.store import LiveView

logger = logging.getLogger(__name__)


class Router:
    def __init__(self, settings: Settings, *, instance: str | None = None, batch_size: int = 500,
                 commit_interval: float = 0.1, poll_timeout: float = 0.05) -> None:
        self.settings = settings
        self.instance = instance or socket.gethostname()
        self.batch_size = batch_size
        self.commit_interval = commit_interval
        self.poll_timeout = poll_timeout
        self.topics = Topics(settings)
        self.view = LiveView(settings)
        self._stopping = False
        self._filter_log = LogLimiter(logger)
        self._checkpoint: Checkpoint | None = None

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        self.topics.ensure_bus_topics()
        with ExitStack() as stack:
            self.view.start()
            stack.callback(self.view.stop)
            self.producer = clients.producer(self.settings, transactional_id=f"evbus-router-{self.instance}")
            self.consumer = clients.consumer(self.settings, self.settings.router_group,
                                             **{"topic.metadata.refresh.interval.ms": 1000})
            stack.callback(self.consumer.close)
            self._checkpoint = Checkpoint(self.producer, self.consumer)
            self.consumer.subscribe([self.settings.events_regex], on_revoke=self._on_revoke, on_lost=self._on_lost)
            logger.info("router %s routing events.* with %d subscriptions", self.instance, len(self.view.index))
            self._loop()
            self._commit()  # the records routed since the last commit
            logger.info("router %s stopped cleanly", self.instance)

    def _loop(self) -> None:
        cp = self._checkpoint
        assert cp is not None
        while not self._stopping:
            if self.view.error is not None:
                raise RuntimeError(f"subscription view failed: {self.view.error}")
            for msg in self.consumer.consume(self.batch_size, self.poll_timeout):
                self._route(msg)
                cp.pending += 1
            if cp.pending and (cp.pending >= self.batch_size
                               or time.monotonic() - cp.opened_at >= self.commit_interval):
                self._commit()

    def _commit(self) -> None:
        cp = self._checkpoint
        assert cp is not None
        try:
            cp.commit()
        except KafkaException as exc:
            kind = classify(exc)
            if kind == "fatal":
                raise fatal(exc) from None
            logger.warning("commit failed (%s), aborting: %s", kind, exc)
            cp.abort()

    def _on_revoke(self, consumer, partitions) -> None:
        logger.info("partitions revoked: %s; committing what was routed", _tps(partitions))
        self._commit()

    def _on_lost(self, consumer, partitions) -> None:
        logger.warning("partitions lost: %s; aborting the open transaction", _tps(partitions))
        if self._checkpoint is not None:
            self._checkpoint.abort()

    def _route(self, msg: Message) -> None:
        if msg.error():
            logger.warning("consumer error: %s", msg.error())
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        metrics.EVENTS_CONSUMED.labels(topic).inc()
        try:
            decoded = decode(msg.value(), msg.headers(), self.settings.max_event_bytes)
        except DecodeError as exc:
            self._dead_letter(msg, exc.reason, exc.detail)
            return
        event = decoded.event
        with self.view.lock:
            result = self.view.index.match(event.tenant, event.type, event.payload, event.meta)
        self._report(result, decoded, f"{topic}[{partition}]@{offset}")
        now = datetime.now(timezone.utc)
        for entry in result.matched:
            self._produce_trigger(msg, decoded, entry, now)
        metrics.ROUTING_LATENCY.observe(max(0.0, (now - event.time).total_seconds()))

    def _report(self, result: MatchResult, decoded: Decoded, where: str) -> None:
        for entry, error in result.errors:
            metrics.FILTER_ERRORS.labels(entry.tenant, entry.name).inc()
            self._filter_log.warning("filter of %s failed on %s (%s): %s; counted as no match",
                                     entry.key, decoded.event.id, where, error)

    def _produce_trigger(self, msg: Message, decoded: Decoded, entry, now: datetime) -> None:
        key = f"{decoded.event.id}:{entry.name}"
        value = codec.encode_trigger_from_body(
            decoded.body, subscription=entry.name, tenant=entry.tenant, workflow=entry.workflow,
            routed_at=now, idempotency_key=key, source_topic=msg.topic(), source_partition=msg.partition(),
            source_offset=msg.offset())
        topic = self.settings.trigger_topic(entry.workflow)
        self.topics.ensure(topic)
        headers = [("evbus-tenant", entry.tenant.encode()), ("evbus-subscription", entry.name.encode()),
                   ("evbus-idempotency-key", key.encode())]
        self._produce(topic, msg.key(), value, headers)
        metrics.MATCHES.labels(entry.tenant, entry.name).inc()
        metrics.TRIGGERS_ROUTED.labels(entry.workflow).inc()

    def _dead_letter(self, msg: Message, reason: str, detail: str) -> None:
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        logger.warning("dead-lettering %s: %s: %s", where, reason, detail)
        headers = list(msg.headers() or []) + [
            ("evbus-dlq-reason", reason.encode()), ("evbus-dlq-detail", detail[:2000].encode()),
            ("evbus-dlq-topic", msg.topic().encode()), ("evbus-dlq-partition", str(msg.partition()).encode()),
            ("evbus-dlq-offset", str(msg.offset()).encode()),
            ("evbus-dlq-time", datetime.now(timezone.utc).isoformat().encode())]
        self._produce(self.settings.deadletter_topic, msg.key(), msg.value(), headers)
        metrics.DEAD_LETTERS.labels(reason).inc()

    def _produce(self, topic: str, key, value, headers) -> None:
        assert self._checkpoint is not None
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers,
                                      on_delivery=self._checkpoint.on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                self.producer.poll(0.1)


def _tps(partitions) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "none"


def run(settings: Settings, **kwargs) -> None:
    """Route until SIGTERM or SIGINT, then commit what was routed and leave the group."""
    router = Router(settings, **kwargs)
    signal.signal(signal.SIGTERM, router.stop)
    signal.signal(signal.SIGINT, router.stop)
    router.run()
