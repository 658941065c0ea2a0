"""Matching alone, no Kafka: the index against naive evaluate-every-filter, on the same events."""

from __future__ import annotations

import gc
import statistics
import time
from datetime import datetime, timezone

import orjson

from router.matching.filters import FilterError, activation, compile_filter
from router.matching.index import Entry, SubscriptionIndex
from router.matching.patterns import matches

from .workload import Sub, events

META = {"id": "x", "source": "bench", "type": "", "tenant": "", "specversion": "1.0",
        "datacontenttype": "application/json", "time": datetime.now(timezone.utc), "subject": None,
        "correlationid": None, "causationid": None}


def entry(s: Sub) -> Entry:
    return Entry.build(f"{s.tenant}/{s.name}", s.name, s.tenant, s.workflow, s.patterns,
                       compile_filter(s.filter) if s.filter else None)


def build_index(subs: list[Sub]) -> SubscriptionIndex:
    return SubscriptionIndex(entry(s) for s in subs)


def encoded_events(subs: list[Sub], count: int) -> list[tuple[str, str, bytes]]:
    return [(t, ty, orjson.dumps(p)) for t, ty, p in events(subs, count)]


def index_eps(index: SubscriptionIndex, evs, repeats: int = 3) -> dict:
    """Events/s through index.match, payload parsing included; median of `repeats` after a warm-up pass."""
    def one_pass() -> tuple[float, int]:
        matched = 0
        start = time.perf_counter()
        for tenant, etype, raw in evs:
            meta = {**META, "type": etype, "tenant": tenant}
            matched += len(index.match(tenant, etype, lambda: orjson.loads(raw), lambda: meta).matched)
        return time.perf_counter() - start, matched
    one_pass()
    gc.collect()
    runs = [one_pass() for _ in range(repeats)]
    seconds = statistics.median(r[0] for r in runs)
    return {"eps": len(evs) / seconds, "us_per_event": seconds / len(evs) * 1e6,
            "matches_per_event": runs[0][1] / len(evs)}


def naive_eps(subs: list[Sub], evs, budget_s: float) -> dict:
    """Every subscription's tenant, patterns and CEL filter for every event: the baseline."""
    programs = [(s.tenant, s.patterns, compile_filter(s.filter) if s.filter else None) for s in subs]
    done, start = 0, time.perf_counter()
    for tenant, etype, raw in evs:
        payload = orjson.loads(raw)
        meta = {**META, "type": etype, "tenant": tenant}
        bound = activation(payload, meta)
        for s_tenant, patterns, program in programs:
            if s_tenant == tenant and any(matches(p, etype) for p in patterns) and program is not None:
                try:
                    program(bound)
                except FilterError:
                    pass
        done += 1
        if time.perf_counter() - start > budget_s:
            break
    seconds = time.perf_counter() - start
    return {"eps": done / seconds, "events": done, "cut_short": done < len(evs)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def bytes_per_subscription(subs: list[Sub]) -> float:
    """Resident memory the index adds per subscription (compiled filters included)."""
    gc.collect()
    before = rss_bytes()
    index = build_index(subs)
    gc.collect()
    after = rss_bytes()
    assert len(index) == len(subs)
    return (after - before) / len(subs)
