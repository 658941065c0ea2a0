"""The naive baseline the index is measured against: every subscription's filter for every event."""

from __future__ import annotations

from router.matching.filters import FilterError, activation, compile_filter
from router.matching.index import MatchResult, SubscriptionIndex
from router.matching.patterns import matches


class NaiveIndex(SubscriptionIndex):
    """Same interface and results as SubscriptionIndex; tenant, patterns and CEL checked one by one."""

    def put(self, entry) -> None:
        super().put(entry)
        self._programs = getattr(self, "_programs", {})
        if entry.filtered:
            self._programs[entry.key] = compile_filter(entry.filter_text)

    def match(self, tenant, event_type, payload, meta) -> MatchResult:
        result = MatchResult()
        bound = None
        for entry in self._entries.values():
            if entry.tenant != tenant or not any(matches(p, event_type) for p in entry.patterns):
                continue
            if not entry.filtered:
                result.matched.append(entry)
                continue
            if bound is None:
                bound = activation(payload(), meta())
            program = self._programs[entry.key]
            try:
                if program(bound):
                    result.matched.append(entry)
            except FilterError as exc:
                result.errors.append((entry, str(exc)))
        return result
