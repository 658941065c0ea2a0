"""Loading the subscriptions topic at start: as long as it moves (with progress lines), failing only when it
stops moving for the timeout, or when the reading thread fails."""

from __future__ import annotations

import logging
import time

import pytest

from router.config import Settings
from router.errors import KafkaError
from router.subscriptions import store


class _Topics:
    def __init__(self, *_):
        pass

    def ensure_bus_topics(self) -> None:
        pass


class _Slow(store._Follower):
    """Reads `end` offsets, one every `step` seconds, then stalls at `stall_at` (if given) or is ready."""

    def __init__(self, end: int, step: float, stall_at: int | None = None, fail_at: int | None = None) -> None:
        super().__init__(Settings(bootstrap="127.0.0.1:9", namespace="fo."))
        self.params = end, step, stall_at, fail_at

    def _run(self) -> None:
        end, step, stall_at, fail_at = self.params
        self.end = end
        try:
            for offset in range(1, end + 1):
                if offset == fail_at:
                    raise RuntimeError("the broker went away")
                while offset == stall_at and not self._stop.is_set():
                    time.sleep(0.01)
                time.sleep(step)
                self.position = offset
            self.ready.set()
        except BaseException as exc:
            self.error = exc


@pytest.fixture(autouse=True)
def _no_admin(monkeypatch):
    monkeypatch.setattr(store, "Topics", _Topics)


def test_a_load_longer_than_the_timeout_that_keeps_moving_completes_with_progress_lines(caplog):
    follower = _Slow(end=30, step=0.05)  # 1.5 s in all, against a timeout of 0.5 s without progress
    follower.progress_every = 0.3
    with caplog.at_level(logging.INFO, logger=store.__name__):
        started = time.monotonic()
        follower.start(timeout=0.5)
    assert time.monotonic() - started >= 1.4 and follower.ready.is_set()
    lines = [r.getMessage() for r in caplog.records if "loading, offset" in r.getMessage()]
    assert len(lines) >= 2 and lines[0].startswith("subscriptions: loading, offset ") and " of 30 (" in lines[0]


def test_a_load_that_stops_moving_fails_naming_where_it_stopped():
    follower = _Slow(end=30, step=0.01, stall_at=12)
    with pytest.raises(KafkaError, match=r"no progress for 1s \(read up to offset 11 of 30\)"):
        follower.start(timeout=1)
    follower.stop()


def test_a_reading_thread_that_fails_fails_the_start_with_its_error():
    with pytest.raises(KafkaError, match="the broker went away"):
        _Slow(end=30, step=0.01, fail_at=5).start(timeout=5)
