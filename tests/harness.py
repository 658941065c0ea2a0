"""Real processes and real reads for the broker tests: spawn `evbus route|work`, read topics, wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from router.config import Settings

REPO = Path(__file__).resolve().parents[1]


class Proc:
    """An `evbus` subcommand as its own OS process, logging to a file."""

    def __init__(self, settings: Settings, args: list[str], log_dir: Path, name: str, env: dict | None = None,
                 module: str = "router.cli"):
        self.log = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.name = name
        full_env = {**os.environ, "EVBUS_BOOTSTRAP": settings.bootstrap, "EVBUS_NAMESPACE": settings.namespace,
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], env=full_env, cwd=REPO,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 30) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGCONT)  # a paused process takes the SIGTERM when it goes on
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._out.close()

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        wait_until(lambda: text in self.output(), timeout,
                   lambda: f"{self.name} did not log {text!r}; exit={self.proc.poll()}; log:\n{self.output()[-3000:]}")


def wait_until(predicate: Callable[[], bool], timeout: float, message: Callable[[], str] | str = "condition",
               interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message() if callable(message) else f"timed out after {timeout}s waiting for {message}")


def reader(settings: Settings, isolation: str = "read_committed") -> Consumer:
    return Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"verifier-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "isolation.level": isolation, "auto.offset.reset": "earliest"})


def read_all(settings: Settings, topic: str, *, expect: int | None = None, timeout: float = 30,
             idle: float = 1.5, isolation: str = "read_committed") -> list:
    """Every record of `topic` from the beginning: until `expect` are read (then `idle` more seconds to
    catch extras), or until nothing new arrives for `idle` seconds when `expect` is None."""
    consumer = reader(settings, isolation)
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, 0.2) if not m.error()]
            out.extend(batch)
            now = time.monotonic()
            if batch:
                last = now
            reached = expect is None or len(out) >= expect
            if reached and now - last >= idle:
                break
        return out
    finally:
        consumer.close()


def watermarks(settings: Settings, topic: str, partitions: int) -> list[tuple[int, int]]:
    consumer = reader(settings)
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                for p in range(partitions)]
    finally:
        consumer.close()


def log_end(settings: Settings, topic: str) -> int:
    """Sum of a trigger topic's high watermarks: data records, committed or not, plus transaction markers."""
    return sum(high for _, high in watermarks(settings, topic, settings.trigger_partitions))


def header(msg, name: str) -> str | None:
    for k, v in msg.headers() or []:
        if k == name:
            return v.decode() if v is not None else None
    return None
