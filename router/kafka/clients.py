"""Client factories. The settings the bus's promises rest on are forced here and cannot be overridden:
producers are idempotent with acks=all; consumers commit by hand and read only committed records.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer

from ..config import Settings
from ..errors import ConfigError

FORCED_PRODUCER = {"enable.idempotence": True, "acks": "all"}
FORCED_CONSUMER = {"enable.auto.commit": False, "isolation.level": "read_committed"}
MAX_MESSAGE_BYTES = 2 * 1024 * 1024 + 65536


def _merge(base: dict[str, Any], forced: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in forced.items():
        if key in extra and str(extra[key]).lower() != str(value).lower():
            raise ConfigError(f"{key}={extra[key]!r} is refused: the bus needs {key}={value} "
                              "for its delivery guarantees")
    return {**base, **extra, **forced}


def producer_config(settings: Settings, transactional_id: str | None = None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"bootstrap.servers": settings.bootstrap, "linger.ms": 5,
                            "message.max.bytes": MAX_MESSAGE_BYTES, "compression.type": "lz4"}
    if transactional_id:
        base["transactional.id"] = transactional_id
        # An open transaction of a crashed router blocks read_committed readers until it is fenced (a restart
        # with the same transactional id does that at once) or times out. Every blocking call stays below it.
        base["transaction.timeout.ms"] = 60000
        base["retry.backoff.ms"] = 5
        base["retry.backoff.max.ms"] = 50
        # Only failures are reported: a success report is a Python callback that must take the GIL from
        # the routing thread, one per record (transactions of 20,000 triggers took seconds to flush).
        base["delivery.report.only.error"] = True
    return _merge(base, FORCED_PRODUCER, {**settings.extra.get("producer", {}), **extra})


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"bootstrap.servers": settings.bootstrap, "group.id": group,
                            "auto.offset.reset": "earliest", "enable.partition.eof": False,
                            "fetch.max.bytes": 4 * MAX_MESSAGE_BYTES, "session.timeout.ms": 10000,
                            "heartbeat.interval.ms": 1000}
    return _merge(base, FORCED_CONSUMER, {**settings.extra.get("consumer", {}), **extra})


def producer(settings: Settings, transactional_id: str | None = None, **extra: Any) -> Producer:
    return Producer(producer_config(settings, transactional_id, **extra))


def consumer(settings: Settings, group: str, **extra: Any) -> Consumer:
    return Consumer(consumer_config(settings, group, **extra))
