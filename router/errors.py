"""One exception tree for the bus.

    EvbusError
    ├── ConfigError                  settings that would break a promise
    ├── ValidationError              bad input from a caller, never sent anywhere
    │   ├── EventValidationError     type, tenant, payload, size
    │   └── SubscriptionError        name, pattern, filter (carries the position)
    ├── DecodeError                  bytes from Kafka that are not an event (dead-lettered)
    └── KafkaError                   the broker or the client failed
        └── BrokerUnavailable        no broker answered in time
"""

from __future__ import annotations


class EvbusError(Exception):
    """Root of every error the bus raises on purpose."""


class ConfigError(EvbusError):
    """A setting that would break one of the bus's promises."""


class ValidationError(EvbusError, ValueError):
    """Caller input that is refused before anything is written."""


class EventValidationError(ValidationError):
    """An event that cannot be published: bad type, no tenant, bad or oversized payload."""


class SubscriptionError(ValidationError):
    """A subscription that cannot be stored. `field` names the part, `position` the column (1-based)."""

    def __init__(self, message: str, *, field: str, position: int | None = None) -> None:
        self.field = field
        self.position = position
        where = f" at column {position}" if position is not None else ""
        super().__init__(f"{field}{where}: {message}")


class DecodeError(EvbusError):
    """A record read from Kafka that is not a valid event. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class KafkaError(EvbusError):
    """The Kafka client or broker reported a failure."""


class BrokerUnavailable(KafkaError):
    """No broker answered at the configured bootstrap address."""
