"""Delivery of triggers to workflow handlers: key-ordered concurrency, non-blocking retries, dead letters
with context and redrive, pause, rate limits, webhooks. `runner.py` wires these to Kafka."""

from .policy import PermanentError, RetryLater

__all__ = ["PermanentError", "RetryLater"]
