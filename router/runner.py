"""The workflow runner: consumes `triggers.<workflow>` (read_committed) and calls the workflow's handler
at least once per trigger, with an idempotency key (event id + subscription) that is the same on every
delivery. Offsets are committed only after the handler returned for every trigger before them.

    from router import workflow

    @workflow("send-welcome-email")
    def welcome(trigger):
        send(trigger.data["email"], key=trigger.idempotency_key)

The seam for concurrency, retries and dead letters is `Delivery.deliver()`: today it retries in place with
backoff, then dead-letters to `triggers.<workflow>.dlq` with the error, so a failing handler loses nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from confluent_kafka import KafkaException, Message, TopicPartition

from . import metrics
from .config import Settings
from .envelope import codec
from .envelope.model import Event
from .errors import DecodeError, KafkaError
from .kafka import clients
from .kafka.admin import Topics

logger = logging.getLogger(__name__)
Handler = Callable[["Trigger"], Any]
_REGISTRY: dict[str, Handler] = {}


@dataclass(frozen=True)
class Trigger:
    event: Event
    subscription: str
    tenant: str
    workflow: str
    idempotency_key: str
    routed_at: datetime
    topic: str
    partition: int
    offset: int

    @cached_property
    def data(self) -> Any:
        """The event's JSON payload."""
        return self.event.payload()

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def workflow(name: str) -> Callable[[Handler], Handler]:
    """Bind a handler to a workflow name; `evbus work` runs every workflow a module registers."""
    def register(handler: Handler) -> Handler:
        if name in _REGISTRY and _REGISTRY[name] is not handler:
            raise ValueError(f"workflow {name!r} already has a handler: {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = handler
        return handler
    return register


def registered() -> dict[str, Handler]:
    return dict(_REGISTRY)


def to_trigger(msg: Message) -> Trigger:
    r = codec.decode_trigger(msg.value())
    return Trigger(event=r["event"], subscription=r["subscription"], tenant=r["tenant"], workflow=r["workflow"],
                   idempotency_key=r["idempotency_key"], routed_at=r["routed_at"], topic=msg.topic(),
                   partition=msg.partition(), offset=msg.offset())


class Delivery:
    """Calls a handler for one trigger: in-place retries with backoff, then the workflow's dead letters."""

    def __init__(self, name: str, handler: Handler, dead_letter: Callable[[Message, str, int], None],
                 attempts: int = 3, backoff: float = 0.2) -> None:
        self.name = name
        self.handler = handler
        self.dead_letter = dead_letter
        self.attempts = attempts
        self.backoff = backoff
        self._async = inspect.iscoroutinefunction(handler)

    def _call(self, trigger: Trigger) -> None:
        with metrics.HANDLER_SECONDS.labels(self.name).time():
            if self._async:
                asyncio.run(self.handler(trigger))
            else:
                self.handler(trigger)

    def deliver(self, msg: Message) -> None:
        try:
            trigger = to_trigger(msg)
        except DecodeError as exc:
            self.dead_letter(msg, f"undecodable trigger: {exc}", 0)
            return
        for attempt in range(1, self.attempts + 1):
            try:
                self._call(trigger)
                metrics.TRIGGERS_HANDLED.labels(self.name, "ok").inc()
                return
            except Exception as exc:
                metrics.TRIGGERS_HANDLED.labels(self.name, "error").inc()
                logger.warning("%s failed on %s (attempt %d/%d): %s", self.name, trigger.where, attempt,
                               self.attempts, exc)
                error = "".join(traceback.format_exception_only(exc)).strip()
                if attempt < self.attempts:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
        self.dead_letter(msg, error, self.attempts)


class WorkflowWorker:
    """One workflow: its consumer group over `triggers.<workflow>`, its delivery, its dead-letter topic."""

    def __init__(self, settings: Settings, name: str, handler: Handler, stopping: threading.Event,
                 batch_size: int = 100) -> None:
        self.settings = settings
        self.name = name
        self.stopping = stopping
        self.batch_size = batch_size
        self.topic = settings.trigger_topic(name)
        self.dlq_topic = self.topic + ".dlq"
        topics = Topics(settings)
        topics.ensure(self.topic)
        topics.ensure(self.dlq_topic)
        self.producer = clients.producer(settings)
        self.delivery = Delivery(name, handler, self._dead_letter)
        self.error: BaseException | None = None

    def _dead_letter(self, msg: Message, error: str, attempts: int) -> None:
        logger.error("dead-lettering %s[%d]@%d of %s after %d attempts: %s", msg.topic(), msg.partition(),
                     msg.offset(), self.name, attempts, error)
        headers = list(msg.headers() or []) + [
            ("evbus-dlq-reason", b"handler-failed"), ("evbus-dlq-error", error[:2000].encode()),
            ("evbus-dlq-attempts", str(attempts).encode()), ("evbus-dlq-topic", msg.topic().encode()),
            ("evbus-dlq-partition", str(msg.partition()).encode()), ("evbus-dlq-offset", str(msg.offset()).encode()),
            ("evbus-dlq-time", datetime.now(timezone.utc).isoformat().encode())]
        errors: list = []
        self.producer.produce(self.dlq_topic, value=msg.value(), key=msg.key(), headers=headers,
                              on_delivery=lambda err, _m: err and errors.append(err))
        if self.producer.flush(30) or errors:  # not acknowledged: stop before its offset is committed
            raise KafkaError(f"dead letter for {msg.topic()}[{msg.partition()}]@{msg.offset()} not "
                             f"acknowledged: {errors or 'flush timed out'}")
        metrics.TRIGGERS_HANDLED.labels(self.name, "dead-lettered").inc()

    def run(self) -> None:
        consumer = clients.consumer(self.settings, self.settings.runner_group(self.name))
        try:
            consumer.subscribe([self.topic])
            logger.info("workflow %s consuming %s", self.name, self.topic)
            while not self.stopping.is_set():
                handled = []
                for msg in consumer.consume(self.batch_size, 0.1):
                    if msg.error():
                        logger.warning("%s: %s", self.topic, msg.error())
                        continue
                    if self.stopping.is_set():
                        break  # drain: what is not handled yet is redelivered after the restart
                    self.delivery.deliver(msg)
                    handled.append(msg)
                self._commit(consumer, handled)
        except BaseException as exc:
            self.error = exc
            logger.exception("workflow %s stopped on an error", self.name)
        finally:
            consumer.close()

    def _commit(self, consumer, handled: list[Message]) -> None:
        """Commit past the handled triggers only; what was read but not handled is read again."""
        if not handled:
            return
        last: dict[tuple[str, int], int] = {}
        for msg in handled:
            last[(msg.topic(), msg.partition())] = msg.offset() + 1
        offsets = [TopicPartition(t, p, o) for (t, p), o in last.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance took the partition: its new owner redelivers
            logger.warning("%s: commit of %s failed, those triggers will be delivered again: %s", self.name,
                           ", ".join(f"{o.topic}[{o.partition}]@{o.offset}" for o in offsets), exc)


def run(settings: Settings, handlers: dict[str, Handler]) -> None:
    """Run each workflow in its own thread until SIGTERM/SIGINT; the current batch drains, then commits."""
    if not handlers:
        raise ValueError("no workflows to run: decorate a handler with @workflow('name')")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    workers = [WorkflowWorker(settings, name, handler, stopping) for name, handler in handlers.items()]
    threads = [threading.Thread(target=w.run, name=f"workflow-{w.name}") for w in workers]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if any(w.error for w in workers):
            stopping.set()
        for t in threads:
            t.join(0.2)
    failed = [w for w in workers if w.error]
    if failed:
        raise RuntimeError(f"workflow {failed[0].name} failed: {failed[0].error}")
    logger.info("runner stopped cleanly")
