"""The subscription index: "who gets this event?" without visiting every subscription.

    event type ──▶ pattern trie (all tenants' patterns, cached per type)
                     └─▶ per pattern: tenant ──▶ bucket
                                                  ├── scan: subscriptions with no anchor (no filter, ranges only…)
                                                  ├── eq:   path → value key → subscriptions
                                                  │         (`event.dept == "Finance"`, `event.sev in ["a", "b"]`)
                                                  └── has:  path → subscriptions  (`has(event.manager)`)

An anchor is a condition that must hold for the filter to be true (predicates.anchors), so looking up
the event's values in `eq` and `has` finds every subscription that can match, and usually few others.
A filter that *is* its anchor (`event.dept == "Finance"`, `event.sev in [...]`) matches on the lookup alone.
Buckets hold the entries themselves. The buckets of one tenant for one type are merged into one (a plan,
cached; any change to the tenant's subscriptions drops its plans), so an event walks one small structure.
A filter the analyser captures entirely is decided in Python with CEL's semantics, without the engine;
the rest are evaluated by the CEL engine, only when an anchor already holds. The walk of a plan (lookups,
has(), the captured filters' calls) runs in C where it is built (_plan.c; `candidates_py` is its
reference). Tenant scope is structural: a bucket belongs to one tenant. Adding, changing or removing a subscription touches only its own buckets.
Pure: no Kafka, no clocks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from . import predicates as pr
from .filters import Filter, FilterError, activation
from .patterns import PatternTrie

_ANALYSED: dict[str, tuple[Any, Any, bool, Any]] = {}  # filter text → (decide, anchors, exact, native): shared


def _analyse(text: str) -> tuple[Any, Any, bool, Any]:
    found = _ANALYSED.get(text)
    if found is None:
        tree = pr.analyse(text)
        anchors = pr.anchors(tree)
        captured = pr.captured(tree)
        found = (pr.compile_tree(tree) if captured else None,
                 tuple(dict.fromkeys(anchors)) if anchors is not None else None, pr.exact(tree),
                 pr.native_tree(tree) if captured else None)
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
    exact: bool = False  # the filter is its anchor (`event.a == "x"`, `in [...]`): found through it ⇒ true
    uses_meta: bool = False  # the filter names `meta` (the envelope): only then is it built per event
    native: tuple | None = None  # `decide` as data for the C plan walk (predicates.native_tree): set when it is

    @classmethod
    def build(cls, key: str, name: str, tenant: str, workflow: str, patterns: tuple[str, ...],
              filter: Filter | None, recursion: int = 0) -> "Entry":
        if filter is None:
            return cls(key, name, tenant, workflow, patterns, False, recursion=recursion)
        decide, anchors, exact, native = _analyse(filter.text)
        return cls(key, name, tenant, workflow, patterns, True, sys.intern(filter.text), decide,
                   None if decide else filter, anchors, recursion, exact, "meta" in filter.text, native)


def kind(entry: Entry) -> tuple[str, str]:
    """(kind, engine) of describe(), without its text."""
    if not entry.filtered:
        return "always", "none"
    return "scan" if entry.anchors is None else "indexed", "index" if entry.decide is not None else "cel"


def describe(entry: Entry) -> dict[str, Any]:
    """How the router matches an entry, for people: `kind` is "always" (no filter), "indexed" (found only
    through `anchors`, one of which must hold) or "scan" (a candidate for every event of its types);
    `engine` is "index" (decided without the CEL engine) or "cel" (the engine evaluates it for every
    candidate event); `text` says it in a sentence."""
    how, engine = kind(entry)
    if how == "always":
        return {"kind": how, "anchors": [], "engine": engine, "text": "no filter: every event of its types triggers it"}
    anchors = [_anchor_text(path, k) for path, k in entry.anchors or ()]
    found = " or ".join(anchors)
    if entry.anchors is None:
        text = ("evaluated for every event of its types, without the CEL engine" if engine == "index" else
                "evaluated by the CEL engine for every event of its types: the costliest kind")
        text += " (no field the index can look up)"
    elif entry.exact:
        text = f"found by looking up {found}: nothing left to evaluate"
    else:
        text = f"a candidate only when {found}; " + ("the rest decided without the CEL engine" if engine == "index"
                                                       else "then evaluated by the CEL engine")
    return {"kind": how, "anchors": anchors, "engine": engine, "text": text}


def _anchor_text(path: tuple, k: Any) -> str:
    name = ".".join(p if isinstance(p, str) and p.isidentifier() else f"`{p}`" for p in path)
    if k is pr.HAS:
        return f"has({name})"
    if isinstance(k, tuple):  # a tagged key (predicates.key): a bool or null
        value = "null" if k[0] == "null" else str(k[1]).lower()
    else:
        value = json.dumps(k, ensure_ascii=False)
    return f"{name} == {value}"


class MatchResult:
    __slots__ = ("matched", "errors", "evaluated")

    def __init__(self, matched: list[Entry] | None = None) -> None:
        self.matched: list[Entry] = matched if matched is not None else []
        self.errors: list[tuple[Entry, str]] = []
        self.evaluated = 0  # CEL engine evaluations, for the benchmarks


def _top_field(path: tuple) -> str | None:
    """`event.<name>`: the field name, for the inlined lookup; None for any other path."""
    return path[1] if len(path) == 2 and path[0] == "event" and type(path[1]) is str else None


class Bucket:
    """One tenant's subscriptions on one pattern, held as entries (no lookup by key per event)."""

    __slots__ = ("always", "scan", "eq", "has", "size", "needs_data", "meta_users")

    def __init__(self) -> None:
        self.always: dict[str, Entry] = {}  # no filter: every event of the type matches
        self.scan: dict[str, Entry] = {}  # a filter with no anchor: evaluated for every event of the type
        self.eq: dict[tuple, tuple[str | None, dict[Any, dict[str, Entry]]]] = {}  # path → (field, key → entries)
        self.has: dict[tuple, dict[str, Entry]] = {}
        self.size = 0
        self.needs_data = False
        self.meta_users = 0  # entries whose filter names `meta`: none, and the match passes NO_META

    @classmethod
    def merged(cls, buckets: tuple["Bucket", ...]) -> "Bucket":
        """One bucket with the entries of several (a subscription in two of them appears once)."""
        if len(buckets) == 1:
            return buckets[0]
        out = cls()
        for b in buckets:
            out.always.update(b.always)
            out.scan.update(b.scan)
            for path, entries in b.has.items():
                out.has.setdefault(path, {}).update(entries)
            for path, (field, table) in b.eq.items():
                merged = out.eq.setdefault(path, (field, {}))[1]
                for k, entries in table.items():
                    merged.setdefault(k, {}).update(entries)
        out.needs_data = bool(out.scan or out.eq or out.has)
        out.meta_users = sum(b.meta_users for b in buckets)  # (a count of more than 0 is what matters)
        return out

    def add(self, entry: Entry) -> None:
        self.size += 1
        self.meta_users += entry.uses_meta
        if not entry.filtered:
            self.always[entry.key] = entry
        elif entry.anchors is None:
            self.scan[entry.key] = entry
        else:
            for path, k in entry.anchors:
                if k is pr.HAS:
                    self.has.setdefault(path, {})[entry.key] = entry
                else:
                    self.eq.setdefault(path, (_top_field(path), {}))[1].setdefault(k, {})[entry.key] = entry
        self.needs_data = bool(self.scan or self.eq or self.has)

    def remove(self, entry: Entry) -> None:
        self.size -= 1
        self.meta_users -= entry.uses_meta
        if not entry.filtered:
            self.always.pop(entry.key, None)
        elif entry.anchors is None:
            self.scan.pop(entry.key, None)
        else:
            for path, k in entry.anchors:
                if k is pr.HAS:
                    entries = self.has.get(path)
                    if entries is not None:
                        entries.pop(entry.key, None)
                        if not entries:
                            del self.has[path]
                    continue
                found = self.eq.get(path)
                if found is not None and k in found[1]:
                    table = found[1]
                    table[k].pop(entry.key, None)
                    if not table[k]:
                        del table[k]
                    if not table:
                        del self.eq[path]
        self.needs_data = bool(self.scan or self.eq or self.has)


_KEY = attrgetter("key")
_EMPTY = Bucket()
NO_META: dict[str, Any] = {}  # what filters that never name `meta` get for it (never written to)


class SubscriptionIndex:
    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: dict[str, Entry] = {}
        self._trie = PatternTrie()  # every pattern in use, by any tenant
        self._tenants: dict[str, dict[str, Bucket]] = {}  # pattern → tenant → bucket
        self._by_type: dict[str, tuple[dict[str, Bucket], ...]] = {}  # cache: type → matching patterns' maps
        self._plans: dict[str, dict[str, Bucket]] = {}  # cache: tenant → type → its buckets, merged
        self._plan_count = 0
        self.plans_built = 0  # ever: how many long-lived objects routing made (the router freezes them for gc)
        self.kinds: dict[tuple[str, str], int] = {}  # subscriptions by kind() (a metric)
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: Entry) -> None:
        """Add or replace one subscription; only its own buckets (and its tenant's cached plans) change."""
        self.remove(entry.key)
        self._entries[entry.key] = entry
        k = kind(entry)
        self.kinds[k] = self.kinds.get(k, 0) + 1
        self._plans.pop(entry.tenant, None)
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
        k = kind(old)
        if self.kinds[k] == 1:
            del self.kinds[k]
        else:
            self.kinds[k] -= 1
        self._plans.pop(old.tenant, None)
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

    def buckets(self, tenant: str, event_type: str) -> tuple[Bucket, ...]:
        """The tenant's buckets of every pattern the type matches."""
        maps = self._by_type.get(event_type)
        if maps is None:
            maps = tuple(self._tenants[p] for p in self._trie.match(event_type))
            if len(self._by_type) >= 100_000:
                self._by_type.clear()
            self._by_type[event_type] = maps
        return tuple(m[tenant] for m in maps if tenant in m)

    def plan(self, tenant: str, event_type: str) -> Bucket:
        """The tenant's buckets for the type merged into one, cached until the tenant's subscriptions change."""
        plans = self._plans.get(tenant)
        if plans is None:
            plans = self._plans[tenant] = {}
        found = plans.get(event_type)
        if found is None:
            buckets = self.buckets(tenant, event_type)
            found = Bucket.merged(buckets) if buckets else _EMPTY
            self._plan_count += 1
            self.plans_built += 1
            if self._plan_count > 500_000:  # bounded memory: tenants × types seen
                self._plans.clear()
                self._plan_count = 0
                plans = self._plans[tenant] = {}
            plans[event_type] = found
        return found

    def match(self, tenant: str, event_type: str, payload: Callable[[], Any],
              meta: Callable[[], dict[str, Any]]) -> MatchResult:
        """Candidates by type, tenant and anchors; then captured filters or CEL. An error is no match."""
        plans = self._plans.get(tenant)
        plan = plans.get(event_type) if plans is not None else None
        if plan is None:
            plan = self.plan(tenant, event_type)
        result = MatchResult()
        matched = result.matched
        if plan.always:
            matched += plan.always.values()
        if plan.needs_data:
            self._filtered(plan, payload(), meta() if plan.meta_users else NO_META, result)
        if len(matched) > 1:
            matched.sort(key=_KEY)
        return result

    @staticmethod
    def _filtered(plan: Bucket, event: Any, meta: dict, result: MatchResult) -> None:
        """Anchors and captured filters (in C when it is built: candidates()), then the CEL engine for the rest."""
        rest = candidates(plan.eq, plan.has, plan.scan, event, meta, result.matched, result.errors)
        if rest:
            result.evaluated += evaluate(rest, event, meta, result.matched, result.errors)


def evaluate(rest: list[Entry], event: Any, meta: dict, matched: list[Entry], errors: list[tuple[Entry, str]]) -> int:
    """The CEL engine for the entries a plan's walk left (candidates()'s return): those that hold go to
    `matched`, those that err to `errors` with the message. Returns how many it evaluated. router/_route.c
    calls it too."""
    try:
        bound = activation(event, meta)
    except Exception as exc:  # a payload CEL cannot bind: every filter errs
        errors.extend((entry, _message(exc)) for entry in rest)
        return len(rest)
    for entry in rest:
        try:
            if entry.program(bound):
                matched.append(entry)
        except Exception as exc:
            errors.append((entry, _message(exc)))
    return len(rest)


def _message(exc: Exception) -> str:
    """A filter's error as CEL says it; anything else is a payload CEL cannot bind."""
    return str(exc) if isinstance(exc, FilterError) else f"{type(exc).__name__}: {exc}"


OVERLOAD = "no such key or no matching overload"


def candidates_py(eq: dict, has: dict, scan: dict, event: Any, meta: dict, matched: list[Entry],
                  errors: list[tuple[Entry, str]]) -> list[Entry]:
    """The walk of a plan for one event: entries found through an exact anchor and captured filters that
    hold go to `matched` (a captured filter that errs to `errors`); the entries left for the CEL engine are
    returned. The reference for the C walk (router/matching/_plan.c)."""
    exact: dict[str, Entry] = {}  # by key: an Entry's own hash would hash every field
    check: dict[str, Entry] = dict(scan)
    is_dict = type(event) is dict
    for path, (field, table) in eq.items():
        v = event.get(field, pr.ERROR) if field is not None and is_dict else pr.resolve(path, event, meta)
        if v is not pr.ERROR:
            t = type(v)
            hit = table.get(v if t is str or t is int or t is float else pr.key(v))
            if hit:
                for k, entry in hit.items():
                    (exact if entry.exact else check)[k] = entry
    for path, entries in has.items():
        if pr.has_path(path, event) is True:
            check.update(entries)
    matched += exact.values()  # exact entries are only ever filed under their anchors: never in `check`
    rest = []
    for entry in check.values():
        if entry.decide is None:
            rest.append(entry)
            continue
        outcome = entry.decide(event, meta)
        if outcome is True:
            matched.append(entry)
        elif outcome is pr.ERROR:
            errors.append((entry, OVERLOAD))
    return rest


try:
    from . import _plan as native  # built by `pip install` where a C compiler is (setup.py)
except ImportError:
    native = None
    candidates = candidates_py
else:
    native.configure(pr.ERROR, pr.resolve, pr.key, pr.has_path, OVERLOAD)
    candidates = native.candidates
