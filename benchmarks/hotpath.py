"""The router's own CPU per event, with Kafka taken out: the real `Router._route` over encoded events, with
a stand-in message and an outbox that only collects (no producer, no broker). What it measures is the
Python the router spends per event (decode, match, trigger records, bookkeeping), the part that bounds its
throughput on one core whatever the broker does.

    python -m benchmarks.hotpath 1000 10000 100000
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from router.config import Settings
from router.envelope import codec
from router.envelope.model import new_event
from router.router import Router

from .matching import build_index
from .workload import events, subscriptions


class _Msg:
    """What the router reads of a confluent-kafka Message."""

    __slots__ = ("_topic", "_offset", "_key", "_value")

    def __init__(self, topic: str, offset: int, key: bytes, value: bytes) -> None:
        self._topic, self._offset, self._key, self._value = topic, offset, key, value

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

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


class _Outbox:
    """The checkpoint's outbox and nothing after it."""

    pending = 0

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


def router_for(n: int) -> Router:
    """A router over n workload subscriptions that never connects anywhere."""
    router = Router(Settings(bootstrap="127.0.0.1:9", namespace="hp."))
    router.view.index = build_index(subscriptions(n))
    router.topics = _Topics()
    router._checkpoint = _Outbox()
    return router


def us_per_event(n: int, count: int = 20_000, repeats: int = 3) -> dict:
    router = router_for(n)
    subs = subscriptions(n)
    msgs = [_Msg(f"hp.events.{etype.split('.')[0]}", i, tenant.encode(),
                 codec.encode_event(new_event(etype, payload, tenant=tenant, source="bench", max_bytes=1 << 20)))
            for i, (tenant, etype, payload) in enumerate(events(subs, count))]
    route = router._route
    flush = getattr(router, "_flush_metrics", lambda: None)  # (older routers counted as they went: A/B runs)
    for m in msgs:  # warm: plans, metric children, per-subscription trigger parts
        route(m)
    flush()
    gc.collect()
    gc.freeze()  # as the router does once its subscriptions are loaded
    native = getattr(codec, "native", None)  # (absent before the C event reader: A/B runs of older commits)
    readers = {"c": native.read_event, "python": codec.read_event_py} if native else {"python": None}
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, reader in readers.items():  # alternating: the Python event reader is the baseline, same run
            if reader is not None:
                codec._read_v1 = reader
            router._checkpoint.records.clear()
            start = time.perf_counter()
            for m in msgs:
                route(m)
            times[name].append(time.perf_counter() - start)
            flush()
    if native:
        codec._read_v1 = native.read_event
    gc.unfreeze()
    seconds = statistics.median(times["c"] if native else times["python"])
    out = {"us_per_event": round(seconds / count * 1e6, 1), "events_per_s": round(count / seconds),
           "triggers_per_event": round(len(router._checkpoint.records) / count, 2)}
    if native:
        out["python_reader_us_per_event"] = round(statistics.median(times["python"]) / count * 1e6, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", type=int, nargs="*", default=[1000, 10_000, 100_000])
    for n in parser.parse_args().sizes:
        r = us_per_event(n)
        print(f"{n:>7,} subscriptions: {r['us_per_event']:.1f} µs/event ({r['events_per_s']:,} events/s on one "
              f"core), {r['triggers_per_event']} triggers/event; with the Python event reader "
              f"{r.get('python_reader_us_per_event', '-')} µs/event")


if __name__ == "__main__":
    main()
