"""Key-ordered concurrency: which trigger may start now.

Triggers with the same key (per partition) form a queue and run strictly one after another, in offset
order; different keys run side by side, up to `concurrency` calls at once. A failed call waits for its
retry at the head of its key's queue (later triggers of that key wait behind it: order holds), while
every other key goes on. A paused subscription's trigger is held at the head of its key's queue; a rate
limit spaces the starts. Single-threaded: the worker thread drives it; handlers run elsewhere.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Work:
    """One trigger on its way through delivery."""

    tp: tuple[str, int]
    offset: int
    key: Hashable  # ordering key: (partition, record key), unique when the record has no key
    msg: Any  # the Kafka message
    trigger: Any = None  # the decoded Trigger; None when it could not be decoded
    attempts: int = 0
    first_failure: Any = None
    last_failure: Any = None
    error_type: str = ""
    error: str = ""
    cancelled: bool = False  # its partition was revoked while it ran: the outcome is dropped
    running: bool = False
    due: float = 0.0  # when its retry may start
    context: dict = field(default_factory=dict)


class TokenBucket:
    """At most `rate` starts per second, `burst` at once."""

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = burst, clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1 - 1e-9:  # float steps of 1/rate must not lose a start
            self._tokens -= 1
            return True
        return False

    def wait(self) -> float:
        return max(0.0, (1 - self._tokens) / self.rate)


class Scheduler:
    def __init__(self, concurrency: int, start: Callable[[Work], None], paused: Callable[[Work], bool],
                 rate: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self._start = start
        self._paused = paused
        self._clock = clock
        self._bucket = TokenBucket(rate, clock=clock) if rate else None
        self._queues: dict[Hashable, deque[Work]] = {}
        self._ready: deque[Hashable] = deque()  # keys whose head may start
        self._waiting: list[tuple[float, int, Hashable]] = []  # keys whose head waits for its retry
        self._held: set[Hashable] = set()  # keys whose head belongs to a paused subscription
        self._seq = itertools.count()
        self.in_flight = 0

    # -- what comes in ---------------------------------------------------------------------------------
    def add(self, work: Work) -> None:
        queue = self._queues.get(work.key)
        if queue is None:
            self._queues[work.key] = deque([work])
            self._ready.append(work.key)
        else:
            queue.append(work)

    def dispatch(self) -> int:
        """Start what may start; returns how many started."""
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            due, _, key = heapq.heappop(self._waiting)
            queue = self._queues.get(key)
            if queue and queue[0].due == due:  # not a stale entry of a dropped and re-added key
                self._ready.append(key)
        started = 0
        while self._ready and self.in_flight < self.concurrency:
            key = self._ready[0]
            queue = self._queues.get(key)
            if not queue:
                self._ready.popleft()
                continue
            head = queue[0]
            if head.running:
                self._ready.popleft()
                continue
            if self._paused(head):
                self._ready.popleft()
                self._held.add(key)
                continue
            if self._bucket is not None and not self._bucket.take():
                break
            self._ready.popleft()
            self.in_flight += 1
            head.attempts += 1
            head.running = True
            started += 1
            self._start(head)
        return started

    def release_held(self) -> int:
        """Keys whose head is no longer paused go back to ready (call after a subscription changes)."""
        resumed = [k for k in self._held if k in self._queues and not self._paused(self._queues[k][0])]
        for key in resumed:
            self._held.discard(key)
            self._ready.append(key)
        self._held &= self._queues.keys()
        return len(resumed)

    # -- what comes back -------------------------------------------------------------------------------
    def finished(self, work: Work, started: bool = True) -> None:
        """The head of its key is done (handled or dead-lettered): the next of that key may start."""
        if started:
            self.in_flight -= 1
        work.running = False
        if work.cancelled:
            return
        queue = self._queues[work.key]
        assert queue[0] is work, "only the head of a key's queue can finish"
        queue.popleft()
        if queue:
            self._ready.append(work.key)
        else:
            del self._queues[work.key]

    def retry(self, work: Work, delay: float) -> None:
        self.in_flight -= 1
        work.running = False
        if work.cancelled:
            return
        work.due = self._clock() + delay
        heapq.heappush(self._waiting, (work.due, next(self._seq), work.key))

    def drop(self, partitions: Iterable[tuple[str, int]]) -> int:
        """Forget the work of revoked partitions; calls in flight finish, their outcome is dropped."""
        gone = set(partitions)
        dropped = 0
        for key in [k for k, q in self._queues.items() if q[0].tp in gone]:
            for work in self._queues.pop(key):
                work.cancelled = True
                dropped += 1
        self._held &= self._queues.keys()
        return dropped

    # -- what the worker asks --------------------------------------------------------------------------
    def next_wake(self) -> float | None:
        """Seconds until something could start without new input; None when nothing waits."""
        if self._ready and self.in_flight < self.concurrency:
            return self._bucket.wait() if self._bucket is not None else 0.0
        if self._waiting:
            return max(0.0, self._waiting[0][0] - self._clock())
        return None

    @property
    def held(self) -> int:
        return sum(len(self._queues[k]) for k in self._held if k in self._queues)

    @property
    def retrying(self) -> int:
        return len(self._waiting)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())
