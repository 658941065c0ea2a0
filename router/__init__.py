"""evbus: an event bus for workflow automation on Apache Kafka.

Publish events, subscribe workflows by topic pattern and CEL filter, run the workflows.
"""

from .client import Publisher, publish
from .delivery.policy import PermanentError, RetryLater
from .config import Settings
from .envelope.model import Event
from .errors import (
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    EventValidationError,
    EvbusError,
    KafkaError,
    SubscriptionError,
    ValidationError,
)
from .runner import Trigger, workflow
from .subscriptions import Subscription, SubscriptionStore

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "Event",
    "EventValidationError",
    "EvbusError",
    "KafkaError",
    "PermanentError",
    "Publisher",
    "RetryLater",
    "Settings",
    "Subscription",
    "SubscriptionError",
    "SubscriptionStore",
    "Trigger",
    "ValidationError",
    "publish",
    "workflow",
]
