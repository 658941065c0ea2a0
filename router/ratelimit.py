"""Bounded logging: at most `burst` lines per `period` seconds, then one line saying how many were dropped."""

from __future__ import annotations

import logging
import time


class LogLimiter:
    def __init__(self, logger: logging.Logger, burst: int = 10, period: float = 10.0) -> None:
        self._logger = logger
        self._burst = burst
        self._period = period
        self._window = time.monotonic()
        self._count = 0
        self._dropped = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window >= self._period:
            if self._dropped:
                self._logger.warning("%d similar messages suppressed in the last %.0fs", self._dropped, self._period)
            self._window, self._count, self._dropped = now, 0, 0
        if self._count < self._burst:
            self._count += 1
            self._logger.warning(msg, *args)
        else:
            self._dropped += 1
