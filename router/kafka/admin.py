"""Topics the bus creates for itself: events.<domain>, triggers.<workflow>, the subscriptions and
dead-letter topics. Creation is idempotent; a name once seen is cached for the life of the process.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ..config import Settings
from ..errors import BrokerUnavailable, KafkaError

logger = logging.getLogger(__name__)
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}


class Topics:
    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self._settings = settings
        self._client: AdminClient | None = None  # made on first use: constructing connects nowhere
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._timeout = timeout
        self._listed_at = 0.0

    @property
    def _admin(self) -> AdminClient:
        if self._client is None:
            self._client = AdminClient({"bootstrap.servers": self._settings.bootstrap})
        return self._client

    def list(self) -> set[str]:
        try:
            meta = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(f"no broker answered at {self._settings.bootstrap}: {exc}") from None
        return set(meta.topics)

    def ensure(self, name: str, *, partitions: int | None = None, config: dict[str, str] | None = None) -> None:
        if name in self._known:
            return
        with self._lock:
            if name in self._known:
                return
            if time.monotonic() - self._listed_at > 1.0:  # one listing serves a burst of new names
                self._known |= self.list()
                self._listed_at = time.monotonic()
            if name not in self._known:
                self._create(name, partitions or self._settings.topic_partitions, config or {})
            self._known.add(name)

    def _create(self, name: str, partitions: int, config: dict[str, str]) -> None:
        topic = NewTopic(name, num_partitions=partitions,
                         replication_factor=self._settings.replication_factor, config=config)
        future = self._admin.create_topics([topic], operation_timeout=self._timeout)[name]
        try:
            future.result(timeout=self._timeout)
            logger.info("created topic %s (%d partitions)", name, partitions)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise KafkaError(f"cannot create topic {name}: {exc}") from None

    def ensure_bus_topics(self) -> None:
        self.ensure(self._settings.subscriptions_topic, partitions=1, config=COMPACTED)
        self.ensure(self._settings.deadletter_topic)
