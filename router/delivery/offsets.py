"""Which offsets of a partition are finished, and what may be committed.

Triggers finish out of order (concurrency, retries); the committed offset is the lowest unfinished one,
so a crash loses nothing. The offsets finished above it go into the commit's metadata (as ranges), so
after a restart only the triggers that were really in flight are delivered again, not everything above
the lowest one: duplicates are bounded by what was in flight.
"""

from __future__ import annotations

import heapq

PREFIX = "evbus1:"
MAX_METADATA = 3800  # the broker's offset.metadata.max.bytes is 4096 by default


class PartitionOffsets:
    def __init__(self, committed: int = -1, done_above: set[int] | None = None) -> None:
        self._pending: list[int] = []  # heap; finished offsets are removed lazily
        self._open: set[int] = set()
        self.done: set[int] = set(done_above or ())  # finished, above the low-water mark
        self.next = committed  # one past the highest offset seen (or the committed offset)

    def add(self, offset: int) -> bool:
        """Track a fetched offset; False when it was finished before a restart (skip it)."""
        if self.next < 0 or offset >= self.next:
            self.next = offset + 1
        if offset in self.done:
            return False
        heapq.heappush(self._pending, offset)
        self._open.add(offset)
        return True

    def finish(self, offset: int) -> None:
        self._open.discard(offset)
        self.done.add(offset)

    @property
    def unfinished(self) -> int:
        return len(self._open)

    def low_water(self) -> int:
        """The offset to commit: the lowest unfinished, else one past the highest seen."""
        while self._pending and self._pending[0] not in self._open:
            heapq.heappop(self._pending)
        return self._pending[0] if self._pending else self.next

    def commit_point(self) -> tuple[int, str]:
        low = self.low_water()
        self.done = {o for o in self.done if o >= low}
        return low, encode(low, self.done)


def encode(low: int, done: set[int]) -> str:
    """Finished offsets above `low` as ranges relative to it: "evbus1:1-3,7". Cut to fit the broker's
    limit; what is cut is only delivered again."""
    parts: list[str] = []
    size = len(PREFIX)
    for start, end in _ranges(sorted(o - low for o in done if o > low)):
        part = str(start) if start == end else f"{start}-{end}"
        size += len(part) + 1
        if size > MAX_METADATA:
            break
        parts.append(part)
    return PREFIX + ",".join(parts) if parts else ""


def decode(low: int, metadata: str | None) -> set[int]:
    if not metadata or not metadata.startswith(PREFIX):
        return set()
    done: set[int] = set()
    try:
        for part in filter(None, metadata[len(PREFIX):].split(",")):
            start, _, end = part.partition("-")
            done.update(range(low + int(start), low + int(end or start) + 1))
    except ValueError:
        return set()  # not ours after all: deliver again rather than skip
    return done


def _ranges(values: list[int]):
    it = iter(values)
    for first in it:
        last = first
        for v in it:
            if v == last + 1:
                last = v
                continue
            yield first, last
            first = last = v
        yield first, last
