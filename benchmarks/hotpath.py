"""The router's own CPU per event, with Kafka taken out: the real `Router._route` over encoded events, with
a stand-in message and an outbox that only collects (no producer, no broker). What it measures is the
Python the router spends per event (decode, match, trigger records, bookkeeping), the part that bounds its
throughput on one core whatever the broker does.

    python -m benchmarks.hotpath 1000 10000 100000
    python -m benchmarks.hotpath 10000 --extra 'event.amount + 1 > 2'

--extra gives every tenant one more subscription, to every type (`**`), with that filter: a filter for the
CEL engine, or one that errs, met by every event.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from router.client import event_headers
from router.config import Settings
from router.envelope import codec
from router.envelope.model import new_event
from router.matching.filters import compile_filter
from router.matching.index import Entry
from router.router import Router

from .matching import build_index
from .workload import events, subscriptions

BATCH = 2000  # records per _route_all call: what one consume() gives the router under load


class _Msg:
    """What the router reads of a confluent-kafka Message."""

    __slots__ = ("_topic", "_offset", "_key", "_value", "_headers")

    def __init__(self, topic: str, offset: int, key: bytes, value: bytes, headers: list | None = None) -> None:
        self._topic, self._offset, self._key, self._value, self._headers = topic, offset, key, value, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list | None:
        return self._headers

    def error(self) -> None:
        return None


class _Outbox:
    """The checkpoint's outbox and nothing after it."""

    pending = 0
    max_buffered = 1 << 62  # never handed over: the records stay to be counted

    def __init__(self) -> None:
        self.records: list[tuple] = []

    @property
    def outbox(self) -> list[tuple]:
        return self.records

    def sent(self) -> None:
        pass

    def send(self, *record) -> None:
        self.records.append(record)


class _Topics:
    def ensure(self, *_, **__) -> None:
        pass


def router_for(n: int, extra: str | None = None) -> Router:
    """A router over n workload subscriptions (and `extra`'s, see the module's doc) that never connects
    anywhere."""
    router = Router(Settings(bootstrap="127.0.0.1:9", namespace="hp."))
    subs = subscriptions(n)
    router.view.index = build_index(subs)
    if extra is not None:
        compiled = compile_filter(extra)
        for tenant in sorted({s.tenant for s in subs}):
            router.view.index.put(Entry.build(f"{tenant}/extra", "extra", tenant, "wf-extra", ("**",), compiled))
    router.topics = _Topics()
    router._checkpoint = _Outbox()
    return router


def us_per_event(n: int, count: int = 20_000, repeats: int = 3, extra: str | None = None) -> dict:
    """µs per event as the router routes (batches of BATCH through _route_all: the C common case where it is
    built) and, alternating in the same run as the baseline, every record through _route one at a time."""
    router = router_for(n, extra)
    subs = subscriptions(n)
    evs = [new_event(etype, payload, tenant=tenant, source="bench", max_bytes=1 << 20)
           for tenant, etype, payload in events(subs, count)]
    msgs = [_Msg(f"hp.events.{e.domain}", i, e.tenant.encode(), codec.encode_event(e), event_headers(e))
            for i, e in enumerate(evs)]  # with the headers the Publisher gives every event
    route = router._route
    flush = getattr(router, "_flush_metrics", lambda: None)  # (older routers counted as they went: A/B runs)
    route_all = getattr(router, "_route_all", None)  # (absent before the C common case: A/B runs)
    batches = [msgs[i:i + BATCH] for i in range(0, len(msgs), BATCH)]

    def batched() -> None:
        for batch in batches:
            route_all(batch)

    def one_by_one() -> None:
        for m in msgs:
            route(m)
    one_by_one()  # warm: plans, metric children, per-subscription trigger parts
    flush()
    gc.collect()
    gc.freeze()  # as the router does once its subscriptions are loaded
    ways = {"batched": batched, "route": one_by_one} if route_all else {"route": one_by_one}
    times: dict[str, list[float]] = {name: [] for name in ways}
    triggers = {}
    for _ in range(repeats):
        for name, way in ways.items():  # alternating: drift hits both alike
            router._checkpoint.records.clear()
            start = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - start)
            triggers[name] = len(router._checkpoint.records)
            flush()
    gc.unfreeze()
    if len(set(triggers.values())) != 1:
        raise RuntimeError(f"the two ways built different numbers of triggers: {triggers}")
    seconds = statistics.median(times[next(iter(ways))])
    out = {"us_per_event": round(seconds / count * 1e6, 1), "events_per_s": round(count / seconds),
           "triggers_per_event": round(triggers["route"] / count, 2)}
    if route_all:
        out["route_us_per_event"] = round(statistics.median(times["route"]) / count * 1e6, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", type=int, nargs="*", default=[1000, 10_000, 100_000])
    parser.add_argument("--extra", help="a filter every tenant subscribes with, to every type")
    args = parser.parse_args()
    for n in args.sizes:
        r = us_per_event(n, extra=args.extra)
        print(f"{n:>7,} subscriptions: {r['us_per_event']:.1f} µs/event ({r['events_per_s']:,} events/s on one "
              f"core), {r['triggers_per_event']} triggers/event; every record through Router._route "
              f"{r.get('route_us_per_event', '-')} µs/event")


if __name__ == "__main__":
    main()
