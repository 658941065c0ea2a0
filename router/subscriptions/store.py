"""Subscriptions live on one compacted Kafka topic, keyed tenant/name; a tombstone deletes.

`SubscriptionStore` writes (validated first: nothing invalid is ever written) and reads a snapshot.
`LiveView` follows the topic from a background thread and keeps a `SubscriptionIndex` current, so
changes reach a running router within a second, with no restart.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, TopicPartition

from ..config import Settings
from ..envelope import codec
from ..errors import DecodeError, KafkaError, SubscriptionError
from ..kafka import clients
from ..kafka.admin import Topics
from ..matching import filters
from ..matching.index import Entry, SubscriptionIndex
from .model import Subscription, build, from_record

logger = logging.getLogger(__name__)


def entry_for(sub: Subscription, compiled: filters.Filter | None = None) -> Entry:
    if compiled is None and sub.filter is not None:
        compiled = filters.compile_filter(sub.filter)
    return Entry.build(sub.key, sub.name, sub.tenant, sub.workflow, sub.patterns, compiled, sub.recursion)


class SubscriptionStore:
    def __init__(self, settings: Settings, topics: Topics | None = None) -> None:
        self._settings = settings
        self._topics = topics or Topics(settings)
        self._producer = clients.producer(settings)

    def close(self) -> None:
        """Let the producer go (every write is flushed when it is made); its connections close now."""
        self._producer.close()

    def put(self, *, name: str, tenant: str, workflow: str, patterns: list[str] | tuple[str, ...],
            filter: str | None = None, enabled: bool = True, **delivery) -> Subscription:
        """Create or replace a subscription; `delivery`: paused, recursion, max_attempts, max_age_s."""
        sub, _ = build(name=name, tenant=tenant, workflow=workflow, patterns_=patterns, filter=filter,
                       enabled=enabled, **delivery)  # validated before anything touches Kafka
        self._topics.ensure_bus_topics()
        self._topics.ensure(self._settings.trigger_topic(workflow), partitions=self._settings.trigger_partitions)
        self._send(sub.key, codec.encode_subscription(sub.to_record()))
        return sub

    def set_paused(self, tenant: str, name: str, paused: bool) -> Subscription:
        """Pause or resume: the router keeps routing, the runner holds a paused subscription's triggers."""
        sub = self.get(tenant, name)
        if sub is None:
            raise SubscriptionError(f"no subscription {tenant}/{name}", field="name")
        return self.put(name=sub.name, tenant=sub.tenant, workflow=sub.workflow, patterns=sub.patterns,
                        filter=sub.filter, enabled=sub.enabled, paused=paused, recursion=sub.recursion,
                        max_attempts=sub.max_attempts, max_age_s=sub.max_age_s)

    def delete(self, tenant: str, name: str) -> bool:
        if self.get(tenant, name) is None:
            return False
        self._send(f"{tenant}/{name}", None)
        return True

    def _send(self, key: str, value: bytes | None) -> None:
        errors: list[str] = []
        self._producer.produce(self._settings.subscriptions_topic, key=key.encode(), value=value,
                               on_delivery=lambda err, _msg: err and errors.append(str(err)))
        if self._producer.flush(30) or errors:
            raise KafkaError(f"subscription {key} was not stored: {errors or 'flush timed out'}")

    def get(self, tenant: str, name: str) -> Subscription | None:
        return self.snapshot().get(f"{tenant}/{name}")

    def list(self, tenant: str | None = None) -> list[Subscription]:
        subs = self.snapshot().values()
        return sorted((s for s in subs if tenant is None or s.tenant == tenant), key=lambda s: s.key)

    def snapshot(self) -> dict[str, Subscription]:
        """Read the topic from the beginning up to its end as of now."""
        state: dict[str, Subscription] = {}
        self._topics.ensure_bus_topics()
        with _reader(self._settings) as (consumer, high):
            for msg in _drain(consumer, self._settings.subscriptions_topic, high, deadline=time.monotonic() + 30):
                _apply(state, msg)
        return state


@contextmanager
def _reader(settings: Settings) -> Iterator[tuple[object, int]]:
    consumer = clients.consumer(settings, group=f"evbus.subscriptions-reader.{uuid.uuid4().hex[:8]}")
    try:
        tp = TopicPartition(settings.subscriptions_topic, 0, OFFSET_BEGINNING)
        _, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        consumer.assign([tp])
        yield consumer, high
    except KafkaException as exc:
        raise KafkaError(f"cannot read {settings.subscriptions_topic}: {exc}") from None
    finally:
        consumer.close()


def _drain(consumer, topic: str, high: int, deadline: float) -> Iterator[Message]:
    """Records up to the end offset `high`, by position (a compacted topic has gaps in its offsets)."""
    tp = TopicPartition(topic, 0)
    while high > 0 and consumer.position([tp])[0].offset < high:
        if time.monotonic() > deadline:
            raise KafkaError(f"{topic} not read to its end ({consumer.position([tp])[0].offset}/{high})")
        for msg in consumer.consume(500, 0.2):
            if msg.error():
                raise KafkaError(str(msg.error()))
            yield msg


def _apply(state: dict, msg: Message) -> Subscription | None:
    key = msg.key().decode(errors="replace") if msg.key() else ""
    if msg.value() is None:
        state.pop(key, None)
        return None
    try:
        sub = from_record(codec.decode_subscription(msg.value()))
    except DecodeError as exc:
        logger.error("unreadable subscription %s at %s[%d]@%d: %s", key, msg.topic(), msg.partition(),
                     msg.offset(), exc)
        return None
    state[key] = sub
    return sub


class _Follower:
    """Follows the compacted topic from the start on a background thread; `ready` once it has read up to
    the end it found at start. Subclasses apply each record in `_apply(msg)`."""

    name = "subscriptions"
    progress_every = 5.0  # seconds between progress lines while loading

    def __init__(self, settings: Settings) -> None:
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.position, self.end = 0, None  # while loading: the offset read up to, of the end found at start
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self, timeout: float = 30.0):
        """Returns once the topic is read up to the end it had at start. Loading takes as long as it takes
        while it moves (a million subscriptions with filters of their own take minutes), with a progress
        line every `progress_every` seconds; it fails when `timeout` seconds pass without progress, or
        when the thread fails."""
        Topics(self._settings).ensure_bus_topics()
        began = time.monotonic()
        self._thread.start()
        seen, moved, told = -1, began, began
        while not self.ready.wait(min(0.2, timeout)):
            now = time.monotonic()
            if self.error is not None or not self._thread.is_alive():
                raise KafkaError(f"{self.name} not loaded: {self.error}")
            if self.position != seen:
                seen, moved = self.position, now
            elif now - moved >= timeout:
                raise KafkaError(f"{self.name} not loaded: no progress for {timeout:.0f}s "
                                 f"(read up to offset {self.position} of {self.end})")
            if now - told >= self.progress_every and self.end:
                told = now
                logger.info("%s: loading, offset %d of %d (%.0f %%) after %.0fs", self.name, self.position,
                            self.end, 100 * self.position / self.end, now - began)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _apply(self, msg: Message) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            with _reader(self._settings) as (consumer, high):
                self.end = high
                tp = TopicPartition(self._settings.subscriptions_topic, 0)
                while not self._stop.is_set():
                    for msg in consumer.consume(500, 0.1):
                        if msg.error():
                            logger.warning("subscriptions: %s", msg.error())
                        else:
                            self._apply(msg)
                    if not self.ready.is_set():
                        self.position = consumer.position([tp])[0].offset if high else 0
                        if self.position >= high:
                            self.ready.set()
        except BaseException as exc:  # surfaced by start() and by the router's and runner's loops
            self.error = exc
            logger.exception("%s view stopped", self.name)


class LiveView(_Follower):
    """A SubscriptionIndex kept current from the compacted topic by a background thread."""

    def __init__(self, settings: Settings, before_apply: Callable[[Subscription], None] | None = None,
                 on_change: Callable[[str, Subscription | None], None] | None = None):
        super().__init__(settings)
        self.index = SubscriptionIndex()
        self.lock = threading.Lock()
        self._before_apply = before_apply
        self._on_change = on_change

    def _apply(self, msg: Message) -> None:
        key = msg.key().decode(errors="replace") if msg.key() else ""
        if msg.value() is None:
            self._put(key, None)
            if self._on_change:
                self._on_change(key, None)
            return
        try:
            sub = from_record(codec.decode_subscription(msg.value()))
            entry = None
            if sub.enabled:
                _, compiled = build(name=sub.name, tenant=sub.tenant, workflow=sub.workflow,
                                    patterns_=list(sub.patterns), filter=sub.filter)  # other writers' records too
                if self._before_apply:
                    self._before_apply(sub)
                entry = entry_for(sub, compiled)
        except Exception as exc:  # keep what was there: an unreadable record must not unsubscribe anyone
            logger.error("subscription %s at %s[%d]@%d not applied, the previous version stays: %s",
                         key, msg.topic(), msg.partition(), msg.offset(), exc)
            return
        self._put(key, entry)
        if self._on_change:
            self._on_change(key, sub)

    def _put(self, key: str, entry: Entry | None) -> None:
        with self.lock:
            if entry is None:
                self.index.remove(key)
            else:
                self.index.put(entry)


class StateView(_Follower):
    """Every subscription as stored, kept current by a background thread: what the runner reads for
    pause state and retry policy (no filters compiled, no index built)."""

    name = "subscription-state"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.state: dict[str, Subscription] = {}

    def get(self, tenant: str, name: str) -> Subscription | None:
        return self.state.get(f"{tenant}/{name}")

    def _apply(self, msg: Message) -> None:
        _apply(self.state, msg)  # one dict assignment: readers see the old or the new version
