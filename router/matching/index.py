"""The subscription index: "who gets this event?" without looking at every subscription.

Tenant first (a subscription never sees another tenant's events), then the pattern trie of that tenant,
then the filter of each candidate. Pure: no Kafka; the payload is parsed only if a candidate has a filter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .filters import Filter, FilterError, activation
from .patterns import PatternTrie

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # tenant/name
    name: str
    tenant: str
    workflow: str
    patterns: tuple[str, ...]
    filter: Filter | None


@dataclass(slots=True)
class MatchResult:
    matched: list[Entry] = field(default_factory=list)
    errors: list[tuple[Entry, str]] = field(default_factory=list)


class SubscriptionIndex:
    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: dict[str, Entry] = {}
        self._tries: dict[str, PatternTrie] = {}
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
        """Add or replace one subscription; only its own trie paths change."""
        self.remove(entry.key)
        self._entries[entry.key] = entry
        trie = self._tries.setdefault(entry.tenant, PatternTrie())
        for pattern in entry.patterns:
            trie.add(pattern, entry.key)

    def remove(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is None:
            return
        trie = self._tries[old.tenant]
        for pattern in old.patterns:
            trie.remove(pattern, key)
        if not len(trie):
            del self._tries[old.tenant]

    def candidates(self, tenant: str, event_type: str) -> list[Entry]:
        trie = self._tries.get(tenant)
        if trie is None:
            return []
        return [self._entries[k] for k in sorted(trie.match(event_type))]

    def match(self, tenant: str, event_type: str, payload: Callable[[], Any],
              meta: Callable[[], dict[str, Any]]) -> MatchResult:
        """Candidates by tenant and pattern, then filters; a filter error is no match, reported."""
        result = MatchResult()
        bound = None
        for entry in self.candidates(tenant, event_type):
            if entry.filter is None:
                result.matched.append(entry)
                continue
            try:
                if bound is None:
                    bound = activation(payload(), meta())
                if entry.filter(bound):
                    result.matched.append(entry)
            except FilterError as exc:
                result.errors.append((entry, str(exc)))
            except Exception as exc:  # a payload CEL cannot bind (e.g. an integer beyond 64 bits)
                result.errors.append((entry, f"{type(exc).__name__}: {exc}"))
        return result
