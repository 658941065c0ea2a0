"""The router's own garbage collection (router.Router._maybe_collect): the automatic collector is off while
it routes; it freezes what routing keeps (plans, wires) as it grows by half, and collects the rest on a
clock. No broker: the router is made, not run."""

from __future__ import annotations

import gc

import pytest

from router import router as router_module
from router.config import Settings
from router.router import FREEZE_EVERY, GC_EVERY_S, Router


@pytest.fixture
def calls(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(gc, "collect", lambda *a: seen.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: seen.append("freeze"))
    return seen


def test_freezes_as_plans_and_wires_grow_and_collects_on_a_clock(calls, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(router_module.time, "monotonic", lambda: now[0])
    r = Router(Settings(bootstrap="127.0.0.1:1"))
    r._freeze()
    assert calls == ["collect", "freeze"]
    calls.clear()
    r.view.index.plans_built += FREEZE_EVERY - 1
    r._maybe_collect()
    assert calls == []  # not grown enough, not time yet
    r.view.index.plans_built += 1
    r._maybe_collect()
    assert calls == ["collect", "freeze"]
    calls.clear()
    r.view.index.plans_built += max(FREEZE_EVERY, r._frozen_at // 2) - 1
    now[0] += GC_EVERY_S
    r._maybe_collect()
    assert calls == ["collect"]  # the clock: a collection, no freeze
    calls.clear()
    now[0] += 1
    r._maybe_collect()
    assert calls == []
    r.view.index.plans_built += 1
    r._maybe_collect()
    assert calls == ["collect", "freeze"]


def test_routing_makes_no_cycles():
    """With the automatic collector off, cyclic garbage waits for the router's next collection (up to
    GC_EVERY_S): matching a workload's events, plans built on the way, must make none."""
    import orjson

    from benchmarks.matching import build_index, encoded_events
    from benchmarks.workload import subscriptions

    subs = subscriptions(2000)
    index = build_index(subs)
    evs = encoded_events(subs, 3000)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        matched = 0
        for tenant, etype, raw in evs:
            meta = {"type": etype, "tenant": tenant, "id": "e", "source": "s", "subject": None}
            matched += len(index.match(tenant, etype, lambda: orjson.loads(raw), lambda: meta).matched)
        assert matched > 0
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
