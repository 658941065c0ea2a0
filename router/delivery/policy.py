"""What a handler may say about a failure, and how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass


class PermanentError(Exception):
    """Raised by a handler: retrying cannot help; the trigger goes straight to the dead letters."""


class RetryLater(Exception):
    """Raised by a handler (or the webhook mode on 429): retry, but not before `after` seconds."""

    def __init__(self, message: str, after: float = 0.0) -> None:
        super().__init__(message)
        self.after = after


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # handler calls in all, the first included
    max_age_s: float = 86400.0  # a failing trigger routed longer ago than this is not retried
    backoff_s: float = 1.0  # first wait; doubles per attempt
    max_backoff_s: float = 300.0

    def delay(self, attempt: int, at_least: float = 0.0, rng: random.Random = random._inst) -> float:
        """Seconds before attempt `attempt + 1`: exponential with "equal jitter" (half fixed, half random),
        so retries of many triggers that failed together spread out instead of arriving together."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return max(at_least, ceiling / 2 + rng.uniform(0, ceiling / 2))
