"""Topic patterns over dotted event types, and a segment trie that matches many at once.

    user.provisioned   exactly that type
    user.*             `*` is exactly one segment: user.created, not user.a.b
    user.**            `**` is one or more segments: user.created, user.a.b, not `user`
    *.failed           a wildcard may lead: job.failed, backup.failed
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable

from ..errors import SubscriptionError

SEGMENT_RE = re.compile(r"^(\*\*|\*|[a-z0-9][a-z0-9_-]*)$")
MAX_PATTERN = 255


def parse(pattern: str) -> tuple[str, ...]:
    """Split a pattern into segments, or SubscriptionError naming the first bad segment and its column."""
    if not isinstance(pattern, str) or not pattern:
        raise SubscriptionError("pattern is empty", field="pattern")
    if len(pattern) > MAX_PATTERN:
        raise SubscriptionError(f"pattern is {len(pattern)} characters; at most {MAX_PATTERN}", field="pattern")
    segments = tuple(pattern.split("."))
    column = 1
    for seg in segments:
        if not SEGMENT_RE.match(seg):
            what = "an empty segment" if not seg else f"segment {seg!r}"
            raise SubscriptionError(
                f"{what} in {pattern!r}: a segment is lowercase [a-z0-9_-], '*' (one segment) "
                "or '**' (one or more)", field="pattern", position=column)
        column += len(seg) + 1
    return segments


def matches(pattern: str, event_type: str) -> bool:
    """One pattern against one type; the reference the trie is tested against."""
    return _match(parse(pattern), tuple(event_type.split(".")))


def _match(pat: tuple[str, ...], segs: tuple[str, ...]) -> bool:
    if not pat:
        return not segs
    head, rest = pat[0], pat[1:]
    if head == "**":
        return any(_match(rest, segs[i:]) for i in range(1, len(segs) + 1))
    return bool(segs) and (head == "*" or head == segs[0]) and _match(rest, segs[1:])


class _Node:
    __slots__ = ("children", "star", "dstar", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.dstar: _Node | None = None
        self.values: set[Hashable] = set()

    def child(self, seg: str) -> "_Node":
        if seg == "*":
            self.star = self.star or _Node()
            return self.star
        if seg == "**":
            self.dstar = self.dstar or _Node()
            return self.dstar
        return self.children.setdefault(seg, _Node())

    def empty(self) -> bool:
        return not (self.children or self.star or self.dstar or self.values)


class PatternTrie:
    """Many patterns, each with values; `match(type)` yields the values of every pattern that matches."""

    def __init__(self) -> None:
        self._root = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, value: Hashable) -> None:
        node = self._root
        for seg in parse(pattern):
            node = node.child(seg)
        if value not in node.values:
            node.values.add(value)
            self._size += 1

    def remove(self, pattern: str, value: Hashable) -> None:
        path = [self._root]
        for seg in parse(pattern):
            node = path[-1]
            nxt = node.star if seg == "*" else node.dstar if seg == "**" else node.children.get(seg)
            if nxt is None:
                return
            path.append(nxt)
        if value in path[-1].values:
            path[-1].values.discard(value)
            self._size -= 1
        self._prune(path, parse(pattern))

    def _prune(self, path: list[_Node], segs: tuple[str, ...]) -> None:
        for node, parent, seg in zip(reversed(path[1:]), reversed(path[:-1]), reversed(segs)):
            if not node.empty():
                return
            if seg == "*":
                parent.star = None
            elif seg == "**":
                parent.dstar = None
            else:
                del parent.children[seg]

    def match(self, event_type: str) -> set[Hashable]:
        out: set[Hashable] = set()
        self._walk(self._root, event_type.split("."), 0, out)
        return out

    def _walk(self, node: _Node, segs: list[str], i: int, out: set[Hashable]) -> None:
        if i == len(segs):
            out.update(node.values)
            return
        child = node.children.get(segs[i])
        if child is not None:
            self._walk(child, segs, i + 1, out)
        if node.star is not None:
            self._walk(node.star, segs, i + 1, out)
        if node.dstar is not None:
            for j in range(i + 1, len(segs) + 1):
                self._walk(node.dstar, segs, j, out)


def build(pairs: Iterable[tuple[str, Hashable]]) -> PatternTrie:
    trie = PatternTrie()
    for pattern, value in pairs:
        trie.add(pattern, value)
    return trie
