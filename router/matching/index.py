"""The subscription index: "who gets this event?" without visiting every subscription.

    event type ──▶ pattern trie (all tenants' patterns, cached per type)
                     └─▶ per pattern: tenant ──▶ bucket
                                                  ├── scan: subscriptions with no anchor (no filter, ranges only…)
                                                  ├── eq:   path → value key → subscriptions
                                                  │         (`event.dept == "Finance"`, `event.sev in ["a", "b"]`)
                                                  └── has:  path → subscriptions  (`has(event.manager)`)

An anchor is a condition that must hold for the filter to be true (predicates.anchors), so looking up
the event's values in `eq` and `has` finds every subscription that can match, and usually few others.
A filter the analyser captures entirely is decided in Python with CEL's semantics, without the engine;
the rest are evaluated by the CEL engine, only when an anchor already holds. Tenant scope is structural:
a bucket belongs to one tenant. Adding, changing or removing a subscription touches only its own buckets.
Pure: no Kafka, no clocks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import predicates as pr
from .filters import Filter, FilterError, activation
from .patterns import PatternTrie

_ANALYSED: dict[str, tuple[Any, Any]] = {}  # filter text → (decide function or None, anchors): shared


def _analyse(text: str) -> tuple[Any, Any]:
    found = _ANALYSED.get(text)
    if found is None:
        tree = pr.analyse(text)
        anchors = pr.anchors(tree)
        found = (pr.compile_tree(tree) if pr.captured(tree) else None,
                 tuple(dict.fromkeys(anchors)) if anchors is not None else None)
        if len(_ANALYSED) >= 65536:
            _ANALYSED.clear()
        _ANALYSED[text] = found
    return found


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # tenant/name
    name: str
    tenant: str
    workflow: str
    patterns: tuple[str, ...]
    filtered: bool  # has a filter at all
    filter_text: str | None = None
    decide: Any = None  # the captured filter as a function (event, meta) → True/False/ERROR
    program: Filter | None = None  # the CEL program, kept only when the filter is not captured
    anchors: tuple | None = None  # None: filed under scan
    recursion: int = 0  # re-triggers by its own descendants allowed in one causation chain (lineage.py)

    @classmethod
    def build(cls, key: str, name: str, tenant: str, workflow: str, patterns: tuple[str, ...],
              filter: Filter | None, recursion: int = 0) -> "Entry":
        if filter is None:
            return cls(key, name, tenant, workflow, patterns, False, recursion=recursion)
        decide, anchors = _analyse(filter.text)
        return cls(key, name, tenant, workflow, patterns, True, sys.intern(filter.text), decide,
                   None if decide else filter, anchors, recursion)


@dataclass(slots=True)
class MatchResult:
    matched: list[Entry] = field(default_factory=list)
    errors: list[tuple[Entry, str]] = field(default_factory=list)
    evaluated: int = 0  # CEL engine evaluations, for the benchmarks


class Bucket:
    """One tenant's subscriptions on one pattern."""

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
            self.scan_filtered += entry.filtered
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
            self.scan_filtered -= entry.filtered
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
        if self.scan:
            out |= self.scan
        is_dict = type(event) is dict
        for path, table in self.eq.items():
            if is_dict and len(path) == 2 and path[0] == "event":  # the common case, inlined
                v = event.get(path[1], pr.ERROR)
            else:
                v = pr.resolve(path, event, meta)
            if v is not pr.ERROR:
                t = type(v)
                hit = table.get(v if t is str or t is int or t is float else pr.key(v))
                if hit:
                    out |= hit
        for path, keys in self.has.items():
            if pr.has_path(path, event) is True:
                out |= keys


class SubscriptionIndex:
    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: dict[str, Entry] = {}
        self._trie = PatternTrie()  # every pattern in use, by any tenant
        self._tenants: dict[str, dict[str, Bucket]] = {}  # pattern → tenant → bucket
        self._by_type: dict[str, tuple[dict[str, Bucket], ...]] = {}  # cache: type → matching patterns' maps
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: Entry) -> None:
        """Add or replace one subscription; only its own buckets change."""
        self.remove(entry.key)
        self._entries[entry.key] = entry
        for pattern in entry.patterns:
            tenants = self._tenants.get(pattern)
            if tenants is None:
                tenants = self._tenants[pattern] = {}
                self._trie.add(pattern, pattern)
                self._by_type.clear()  # a new pattern: cached type lookups may miss it
            bucket = tenants.get(entry.tenant)
            if bucket is None:
                bucket = tenants[entry.tenant] = Bucket()
            bucket.add(entry)

    def remove(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is None:
            return
        for pattern in old.patterns:
            tenants = self._tenants[pattern]
            bucket = tenants[old.tenant]
            bucket.remove(old)
            if bucket.size == 0:
                del tenants[old.tenant]
                if not tenants:
                    del self._tenants[pattern]
                    self._trie.remove(pattern, pattern)
                    self._by_type.clear()

    def buckets(self, tenant: str, event_type: str) -> list[Bucket]:
        maps = self._by_type.get(event_type)
        if maps is None:
            maps = tuple(self._tenants[p] for p in self._trie.match(event_type))
            if len(self._by_type) >= 100_000:
                self._by_type.clear()
            self._by_type[event_type] = maps
        return [m[tenant] for m in maps if tenant in m]

    def match(self, tenant: str, event_type: str, payload: Callable[[], Any],
              meta: Callable[[], dict[str, Any]]) -> MatchResult:
        """Candidates by type, tenant and anchors; then captured filters or CEL. An error is no match."""
        result = MatchResult()
        buckets = self.buckets(tenant, event_type)
        if not buckets:
            return result
        needs_data = False
        for b in buckets:
            if b.eq or b.has or b.scan_filtered:
                needs_data = True
                break
        event, meta_ = (payload(), meta()) if needs_data else (None, {})
        keys: set[str] = set()
        for bucket in buckets:
            bucket.candidates(keys, event, meta_)
        bound = None
        entries = self._entries
        for k in sorted(keys) if len(keys) > 1 else keys:
            entry = entries[k]
            if not entry.filtered:
                result.matched.append(entry)
                continue
            if entry.decide is not None:
                outcome = entry.decide(event, meta_)
                if outcome is True:
                    result.matched.append(entry)
                elif outcome is pr.ERROR:
                    result.errors.append((entry, "no such key or no matching overload"))
                continue
            try:
                if bound is None:
                    bound = activation(event, meta_)
                result.evaluated += 1
                if entry.program(bound):
                    result.matched.append(entry)
            except FilterError as exc:
                result.errors.append((entry, str(exc)))
            except Exception as exc:  # a payload CEL cannot bind
                result.errors.append((entry, f"{type(exc).__name__}: {exc}"))
        return result
