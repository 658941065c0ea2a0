"""The thin publish client: `publish(type, data, tenant=...)` → `events.<domain>`, returns the event id.

Idempotent producer, acks=all. Everything is checked before sending: a bad type, a missing tenant, a
payload that is not JSON-serialisable or too large raise EventValidationError and nothing is sent.
Used as a context manager it flushes on exit; `flush()` raises if any event was not acknowledged.

Inside a workflow handler, events are published as descendants of the trigger being handled (correlation
id, causation id, hop count and chain: `lineage.py`), so the router can stop loops.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError as CKError

from . import lineage
from .config import Settings
from .envelope import codec
from .envelope.model import Event, new_event
from .errors import KafkaError
from .kafka import clients
from .kafka.admin import Topics


def event_headers(event: Event) -> list[tuple[str, bytes]]:
    """The headers every published event carries, for consumers that filter without decoding (the router
    reads the value, not these)."""
    return [("evbus-tenant", event.tenant.encode()), ("evbus-type", event.type.encode())]


class Publisher:
    def __init__(self, settings: Settings | None = None, *, source: str = "evbus/client") -> None:
        self.settings = settings or Settings.from_env()
        self.source = source
        self._producer = clients.producer(self.settings)
        self._topics = Topics(self.settings)
        self._errors: list[str] = []
        self.acked: list[str] = []  # ids of events the broker acknowledged, in order

    def publish(self, type: str, data: Any = None, *, tenant: str, key: str | bytes | None = None,
                source: str | None = None, subject: str | None = None, correlationid: str | None = None,
                causationid: str | None = None, event_id: str | None = None) -> str:
        parent = lineage.current.get()
        if parent is not None:
            correlationid = correlationid or parent.correlationid
            causationid = causationid or parent.causationid
        event = new_event(type, data, tenant=tenant, source=source or self.source,
                          max_bytes=self.settings.max_event_bytes, subject=subject,
                          correlationid=correlationid, causationid=causationid, event_id=event_id)
        self.send(event, key=key, lineage_=parent)
        return event.id

    def send(self, event: Event, *, key: str | bytes | None = None,
             lineage_: lineage.Lineage | None = None) -> None:
        topic = self.settings.events_topic(event.type)
        self._topics.ensure(topic)
        headers = event_headers(event)
        if lineage_ is not None:
            headers += lineage_.headers()
        value = codec.encode_event(event)
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers,
                                       on_delivery=self._delivered(event.id))
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _delivered(self, event_id: str):
        def callback(err: CKError | None, msg) -> None:
            if err is None:
                self.acked.append(event_id)
            else:
                self._errors.append(f"{event_id}: {err}")
        return callback

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise KafkaError(f"{remaining} events unacknowledged after {timeout:.0f}s; errors: {errors[:5]}")

    def close(self) -> None:
        """Flush, then let the client go (its connections close now, not when it is collected)."""
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.flush()


_default: Publisher | None = None


def publish(type: str, data: Any = None, *, tenant: str, key: str | bytes | None = None,
            source: str | None = None, **kwargs: Any) -> str:
    """Publish one event with a process-wide publisher and wait for its acknowledgement."""
    global _default
    if _default is None:
        _default = Publisher()
    event_id = _default.publish(type, data, tenant=tenant, key=key, source=source, **kwargs)
    _default.flush()
    return event_id
