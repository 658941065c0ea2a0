"""The subscription index: "who gets this event?" without visiting every subscription.

    tenant ──▶ pattern trie ──▶ buckets (one per tenant and pattern)
                                  ├── scan:  subscriptions with no anchor (no filter, or ranges only, ...)
                                  ├── eq:    path → value key → subscriptions   (`event.dept == "Finance"`,
                                  │                                               `event.sev in ["a", "b"]`)
                                  └── has:   path → subscriptions               (`has(event.manager)`)

An anchor is a condition that must hold for the filter to be true (predicates.anchors), so looking up
the event's values in `eq` and `has` finds every subscription that can match, and usually few others.
A filter the analyser captures entirely is decided in Python with CEL's semantics, without the engine;
the rest are evaluated by the CEL engine, only when an anchor already holds. Adding, changing or removing
a subscription touches only its own buckets. Pure: no Kafka, no clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import predicates as pr
from .filters import Filter, FilterError, activation
from .patterns import PatternTrie


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # tenant/name
    name: str
    tenant: str
    workflow: str
    patterns: tuple[str, ...]
    filter: Filter | None
    tree: Any = None  # the filter's predicate tree (predicates.analyse)
    anchors: tuple | None = None  # None: filed under scan

    @classmethod
    def build(cls, key: str, name: str, tenant: str, workflow: str, patterns: tuple[str, ...],
              filter: Filter | None) -> "Entry":
        tree = pr.analyse(filter.text) if filter is not None else None
        anchors = pr.anchors(tree) if tree is not None else None
        return cls(key, name, tenant, workflow, patterns, filter, tree if tree is not None and pr.captured(tree)
                   else None, tuple(dict.fromkeys(anchors)) if anchors is not None else None)


@dataclass(slots=True)
class MatchResult:
    matched: list[Entry] = field(default_factory=list)
    errors: list[tuple[Entry, str]] = field(default_factory=list)
    evaluated: int = 0  # CEL engine evaluations, for the benchmarks


class Bucket:
    __slots__ = ("scan", "eq", "has", "size", "scan_filtered")

    def __init__(self) -> None:
        self.scan: set[str] = set()
        self.scan_filtered = 0  # scan entries with a filter: the payload is needed
        self.eq: dict[tuple, dict[Any, set[str]]] = {}
        self.has: dict[tuple, set[str]] = {}
        self.size = 0

    def add(self, entry: Entry) -> None:
        self.size += 1
        if entry.anchors is None:
            self.scan.add(entry.key)
            self.scan_filtered += entry.filter is not None
            return
        for path, k in entry.anchors:
            if k is pr.HAS:
                self.has.setdefault(path, set()).add(entry.key)
            else:
                self.eq.setdefault(path, {}).setdefault(k, set()).add(entry.key)

    def remove(self, entry: Entry) -> None:
        self.size -= 1
        if entry.anchors is None:
            self.scan.discard(entry.key)
            self.scan_filtered -= entry.filter is not None
            return
        for path, k in entry.anchors:
            if k is pr.HAS:
                keys = self.has.get(path)
                if keys is not None:
                    keys.discard(entry.key)
                    if not keys:
                        del self.has[path]
            else:
                table = self.eq.get(path)
                if table is not None and k in table:
                    table[k].discard(entry.key)
                    if not table[k]:
                        del table[k]
                    if not table:
                        del self.eq[path]

    def candidates(self, out: set[str], event: Any, meta: dict) -> None:
        out |= self.scan
        for path, table in self.eq.items():
            v = pr.resolve(path, event, meta)
            if v is not pr.ERROR:
                k = pr.key(v)
                if k is not None:
                    hit = table.get(k)
                    if hit:
                        out |= hit
        for path, keys in self.has.items():
            if pr.evaluate(pr.Pred("has", path), event, meta) is True:
                out |= keys


class SubscriptionIndex:
    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: dict[str, Entry] = {}
        self._tries: dict[str, PatternTrie] = {}
        self._buckets: dict[tuple[str, str], Bucket] = {}
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def put(self, entry: Entry) -> None:
        """Add or replace one subscription; only its own buckets change."""
        self.remove(entry.key)
        self._entries[entry.key] = entry
        trie = self._tries.setdefault(entry.tenant, PatternTrie())
        for pattern in entry.patterns:
            bucket = self._buckets.get((entry.tenant, pattern))
            if bucket is None:
                bucket = self._buckets[(entry.tenant, pattern)] = Bucket()
                trie.add(pattern, bucket)
            bucket.add(entry)

    def remove(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is None:
            return
        trie = self._tries[old.tenant]
        for pattern in old.patterns:
            bucket = self._buckets[(old.tenant, pattern)]
            bucket.remove(old)
            if bucket.size == 0:
                del self._buckets[(old.tenant, pattern)]
                trie.remove(pattern, bucket)
        if not len(trie):
            del self._tries[old.tenant]

    def buckets(self, tenant: str, event_type: str) -> list[Bucket]:
        trie = self._tries.get(tenant)
        return list(trie.match(event_type)) if trie is not None else []

    def candidates(self, tenant: str, event_type: str, event: Any = None, meta: dict | None = None) -> list[Entry]:
        keys: set[str] = set()
        for bucket in self.buckets(tenant, event_type):
            bucket.candidates(keys, event, meta or {})
        return [self._entries[k] for k in sorted(keys)]

    def match(self, tenant: str, event_type: str, payload: Callable[[], Any],
              meta: Callable[[], dict[str, Any]]) -> MatchResult:
        """Candidates by tenant, pattern and anchors; then captured trees or CEL. An error is no match."""
        result = MatchResult()
        buckets = self.buckets(tenant, event_type)
        if not buckets:
            return result
        needs_data = any(b.eq or b.has or b.scan_filtered for b in buckets)
        event, meta_ = (payload(), meta()) if needs_data else (None, {})
        keys: set[str] = set()
        for bucket in buckets:
            bucket.candidates(keys, event, meta_)
        bound = None
        for k in sorted(keys):
            entry = self._entries[k]
            if entry.filter is None:
                result.matched.append(entry)
                continue
            if entry.tree is not None:
                outcome = pr.evaluate(entry.tree, event, meta_)
                if outcome is True:
                    result.matched.append(entry)
                elif outcome is pr.ERROR:
                    result.errors.append((entry, "no such key or no matching overload"))
                continue
            try:
                if bound is None:
                    bound = activation(event, meta_)
                result.evaluated += 1
                if entry.filter(bound):
                    result.matched.append(entry)
            except FilterError as exc:
                result.errors.append((entry, str(exc)))
            except Exception as exc:  # a payload CEL cannot bind
                result.errors.append((entry, f"{type(exc).__name__}: {exc}"))
        return result
