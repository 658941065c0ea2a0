"""Routing on the real broker: the router and a passthrough loop, in their own processes, over the same
preloaded events; a publish → trigger latency run at a fixed rate; the time a subscription change takes."""

from __future__ import annotations

import functools
import importlib
import itertools
import multiprocessing as mp
import statistics
import threading
import time
import uuid
from datetime import datetime, timezone

from confluent_kafka import Consumer, Producer

from router.client import Publisher
from router.config import Settings
from router.envelope import codec
from router.kafka.admin import COMPACTED, Topics
from router.metrics import COMMIT_SECONDS
from router.router import Router
from router.subscriptions.model import build

from .workload import Sub, events

BATCH, INTERVAL = 2000, 0.1  # throughput settings: big transactions
# Another checkpoint for the router (a what-if, benchmarks/batching.py): ("module:Class", keyword arguments),
# made in the router's process as Class(producer, consumer, max_buffered, **keyword arguments).
CheckpointSpec = tuple[str, dict]

WARM_SHARE = 0.25  # the first transactions of a new producer and group run slow: not counted


class _Counting(Router):
    """The router, stopping itself once `target` records are routed and committed. Throughput is taken
    from the first commit after WARM_SHARE of the events (steady state: a one-time start cost does not
    count; with group commit the slow first transactions absorb many events, so a number of commits is
    no measure of warm)."""

    def __init__(self, settings, target: int, out_topic: str | list[str] = "", **kw) -> None:
        super().__init__(settings, **kw)
        self.out_topic = out_topic
        self.target, self.seen, self.first = target, 0, None
        self.commits, self.warm_at, self.warm_seen = 0, None, 0
        self.announce = None  # called with the checkpoint's class name once routing starts
        self.warm_share = WARM_SHARE
        self.phases_at_warm: dict[str, tuple[float, float]] = {}

    def _loop(self) -> None:
        if self.announce is not None:
            self.announce({"checkpoint": type(self._checkpoint).__name__})
        super()._loop()

    def _route_batch(self, timeout: float) -> int:
        taken = super()._route_batch(timeout)
        if taken and self.first is None:
            self.first = time.perf_counter()
        self.seen += taken
        return taken

    def _commit(self, wait: bool = True) -> None:
        pending = self._checkpoint.pending
        super()._commit(wait)
        if pending and self._checkpoint.pending == 0:
            self.commits += 1
            if self.warm_at is None and self.seen >= self.target * self.warm_share:
                self.warm_at, self.warm_seen = time.perf_counter(), self.seen
                self.phases_at_warm = commit_phases()
        if self.seen >= self.target and self._checkpoint.pending == 0:
            self._checkpoint.finish_commit()  # the last one committed, not just started
            self.done = time.perf_counter()
            self.stop()


def commit_phases() -> dict[str, tuple[float, float]]:
    """This process's commits so far by phase (evbus_router_commit_seconds): (seconds in all, count)."""
    out = {}
    for metric in COMMIT_SECONDS.collect():
        for sample in metric.samples:
            phase = sample.labels.get("phase")
            if sample.name.endswith("_sum"):
                out[phase] = (sample.value, out.get(phase, (0.0, 0.0))[1])
            elif sample.name.endswith("_count"):
                out[phase] = (out.get(phase, (0.0, 0.0))[0], sample.value)
    return out


def _mean_ms(before: dict, after: dict) -> dict[str, float]:
    """Mean ms per commit by phase between two commit_phases(): where a run faster than its kind's others
    gained."""
    out = {}
    for phase, (total, n) in after.items():
        was_total, was_n = before.get(phase, (0.0, 0.0))
        out[phase] = round((total - was_total) * 1e3 / max(1.0, n - was_n), 2)
    return out


class _Passthrough(_Counting):
    """The same loop, client settings and transactions, with no decoding or matching: the ceiling."""

    fast_route = False  # every record through _route, which is this

    def _route(self, msg) -> None:
        self._produce(self.out_topic, msg.key(), msg.value(), msg.headers())


class _Spread(_Passthrough):
    """The passthrough writing each event as it came to the trigger topics in turn (`out_topic` is their
    list): the Kafka cost of the router's output shape, every transaction over every workflow's partition,
    with no decoding, matching or trigger records. `copies` records per event on average (1: one per event,
    where the router writes one per match; the router's matches per event: what its output costs Kafka)."""

    def __init__(self, settings, target: int, out_topic: list[str], copies: float = 1.0, **kw) -> None:
        super().__init__(settings, target, out_topic, **kw)
        self._turns = itertools.cycle(out_topic).__next__
        self.copies, self._owed = copies, 0.0

    def _route(self, msg) -> None:
        self._owed += self.copies
        while self._owed >= 1.0:
            self._produce(self._turns(), msg.key(), msg.value(), msg.headers())
            self._owed -= 1.0


def _run_router(kind: str, settings_json: str, target: int, group: str, out_topic: str | list[str], queue,
                checkpoint: CheckpointSpec | None = None, announce: bool = False,
                warm_share: float = WARM_SHARE, copies: float = 1.0) -> None:
    settings = Settings.model_validate_json(settings_json)
    cls = {"passthrough": _Passthrough, "spread": _Spread, "output": _Spread}.get(kind, _Counting)
    # Latency runs use the router's defaults. A transaction grows to 8 batches while the one before commits, so
    # short (smoke) runs take smaller batches: one grown transaction must not swallow the measured part.
    batch = min(BATCH, max(100, target // 40))
    tuning = {} if kind == "latency" else {"batch_size": batch, "commit_interval": INTERVAL}
    if kind == "output":
        tuning["copies"] = copies
    router = cls(settings, target, out_topic, instance=f"bench-{uuid.uuid4().hex[:6]}", group=group, **tuning)
    if checkpoint is not None:
        module, _, name = checkpoint[0].partition(":")
        router.checkpoint_type = functools.partial(getattr(importlib.import_module(module), name), **checkpoint[1])
    router.warm_share = warm_share
    if announce:
        router.announce = queue.put
    if kind == "naive":
        from .naive import NaiveIndex
        router.view.index = NaiveIndex()
    started = time.perf_counter()
    router.run()
    if router.warm_at is None or router.seen - router.warm_seen < target * 0.1:
        raise RuntimeError(f"too few events after warm-up: {router.seen - router.warm_seen} of {router.seen} "
                           f"in {router.commits} commits; preload more events")
    queue.put({"eps": (router.seen - router.warm_seen) / (router.done - router.warm_at),
               "events": router.seen - router.warm_seen, "seconds": router.done - router.warm_at,
               "commits": router.commits, "subscriptions_loaded_s": router.first - started,
               "seen": router.seen, "warm_seen": router.warm_seen, "first_to_warm_s": router.warm_at - router.first,
               "checkpoint": type(router._checkpoint).__name__,
               "commit_ms": _mean_ms(router.phases_at_warm, commit_phases())})


def route(kind: str, settings: Settings, target: int, out_topic: str | list[str] = "", timeout: float = 600,
          checkpoint: CheckpointSpec | None = None, warm_share: float = WARM_SHARE, copies: float = 1.0) -> dict:
    """One run in its own process: `target` records routed and committed, counted after `warm_share` of
    them. Kinds: router, passthrough, spread, output (the spread writing `copies` records per event), naive."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    # Options go by name and only when set: benchmarks.ab spawns an older checkout's _run_router, which may
    # not know the newer ones.
    options = {name: value for name, value, default in (("checkpoint", checkpoint, None),
                                                        ("warm_share", warm_share, WARM_SHARE), ("copies", copies, 1.0))
               if value != default}
    proc = ctx.Process(target=_run_router, args=(kind, settings.model_dump_json(), target,
                                                 f"bench-{kind}-{uuid.uuid4().hex[:6]}", out_topic, queue),
                       kwargs=options)
    proc.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return queue.get(timeout=1)
            except Exception:  # queue.Empty: is the run still going?
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} run ended without a result (exit {proc.exitcode})") from None
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def load_subscriptions(settings: Settings, subs: list[Sub]) -> None:
    """Write subscriptions straight to the compacted topic, validated as `SubscriptionStore.put` does."""
    topics = Topics(settings)
    topics.ensure(settings.subscriptions_topic, partitions=1, config=COMPACTED)
    for wf in sorted({s.workflow for s in subs}):
        topics.ensure(settings.trigger_topic(wf), partitions=settings.trigger_partitions)
    producer = Producer({"bootstrap.servers": settings.bootstrap, "linger.ms": 20, "acks": "all"})
    for s in subs:
        sub, _ = build(name=s.name, tenant=s.tenant, workflow=s.workflow, patterns_=list(s.patterns), filter=s.filter)
        while True:
            try:
                producer.produce(settings.subscriptions_topic, key=sub.key.encode(),
                                 value=codec.encode_subscription(sub.to_record()))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0


def publish_events(settings: Settings, subs: list[Sub], count: int, times: int = 1) -> None:
    """`count` workload events, published `times` times over (the same events again: warm runs)."""
    evs = events(subs, count)
    with Publisher(settings, source="bench") as pub:
        for _ in range(times):
            for tenant, etype, payload in evs:
                pub.publish(etype, payload, tenant=tenant, key=tenant)


def _background_router(kind: str, settings: Settings, group: str | None = None,
                       checkpoint: CheckpointSpec | None = None):
    """A router process that runs until killed, routing what is published from now on (not the
    throughput runs' preloaded events: a backlog would be measured as latency). Routers given the same
    `group` share the events' partitions, as a scaled-out deployment does. Once routing, it puts
    {"checkpoint": class name} on `proc.result_queue`."""
    extra = {**settings.extra, "consumer": {**settings.extra.get("consumer", {}), "auto.offset.reset": "latest"}}
    settings = settings.model_copy(update={"extra": extra})
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()  # kept alive with the process: the child unpickles it after start()
    proc = ctx.Process(target=_run_router, args=(kind, settings.model_dump_json(), 10**12,
                                                 group or f"bench-{kind}-{uuid.uuid4().hex[:6]}", "", queue,
                                                 checkpoint, True))
    proc.start()
    proc.result_queue = queue
    return proc


def _reader(settings: Settings, reset: str, **extra) -> Consumer:
    return Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex[:6]}",
                     "isolation.level": "read_committed", "auto.offset.reset": reset, "enable.auto.commit": False,
                     **extra})


def latency(settings: Settings, subs: list[Sub], rates: list[int], seconds: float, warm: int = 300,
            routers: int = 1, checkpoint: CheckpointSpec | None = None) -> dict:
    """Publish at each of `rates` events/s in turn (`seconds` each, lowest first, 2 s apart); a read_committed
    consumer of every trigger topic times each trigger. `routers` router processes in one group, and one
    publisher, throughout. Each rate's figures name the router's checkpoint class; a router that died during
    the run fails it (its samples would stop short)."""
    group = f"bench-latency-{uuid.uuid4().hex[:6]}"
    procs = [_background_router("latency", settings, group, checkpoint) for _ in range(routers)]
    consumer = _reader(settings, "latest", **{"topic.metadata.refresh.interval.ms": 1000, "fetch.wait.max.ms": 5})
    consumer.subscribe(["^" + settings.namespace.replace(".", r"\.") + r"triggers\..*"])
    samples: list[tuple[float, float]] = []  # (event time, ms from it to the trigger read)
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            first = consumer.poll(0.05)  # no waiting for a full batch: that would add to what is measured
            for m in ([first, *consumer.consume(1000, 0)] if first is not None else []):
                if not m.error():
                    sent = codec.decode_trigger(m.value())["event"].time.timestamp()
                    samples.append((sent, (time.time() - sent) * 1000))
    collector = threading.Thread(target=collect)
    collector.start()
    phases: list[tuple[int, float, float]] = []
    died: list[int | None] = []
    try:
        # One publisher for every phase: a new one holds its first records until it has connected and got
        # its producer id (~0.3 s here), which at 2,000 events/s is 1.5 % of a 20 s run, i.e. the p99.
        with Publisher(settings, source="bench") as pub:
            # warm-up: the router loads, joins, and makes its first (slow, once) transactional offset commit
            for tenant, etype, payload in events(subs, warm):
                pub.publish(etype, payload, tenant=tenant, key=tenant)
                time.sleep(0.03)
            time.sleep(3)
            for rate in sorted(rates):
                evs = events(subs, int(rate * seconds))
                began = time.time()
                start = time.perf_counter()
                for i, (tenant, etype, payload) in enumerate(evs):
                    due = start + i / rate
                    while time.perf_counter() < due:
                        time.sleep(max(0.0, min(0.001, due - time.perf_counter())))
                    pub.publish(etype, payload, tenant=tenant, key=tenant)
                phases.append((rate, began, time.time()))
                time.sleep(2)  # the phase's last triggers arrive before the next phase begins
        time.sleep(1)
        died = [router.exitcode for router in procs if not router.is_alive()]
        started = [router.result_queue.get(timeout=5)["checkpoint"] for router in procs] if not died else []
    finally:
        stop.set()
        collector.join()
        consumer.close()
        for router in procs:
            router.kill()
            router.join(10)
    if died:
        raise RuntimeError(f"a router process ended during the latency run (exit {died})")
    out = {}
    for rate, began, ended in phases:
        steady = sorted(ms for sent, ms in samples if began <= sent <= ended)
        if not steady:
            raise RuntimeError(f"no trigger arrived in the latency run at {rate}/s")
        out[rate] = {"p50": statistics.median(steady), "p99": steady[int(len(steady) * 0.99) - 1], "rate": rate,
                     "samples": len(steady), "checkpoint": started[0]}
    return out


def subscription_change(settings: Settings, tenant: str, load_wait: float = 15) -> float:
    """Seconds from a subscription's write being acknowledged to the router routing with it (upper bound,
    20 ms resolution): probes are published every 20 ms until one is triggered."""
    from router.subscriptions.store import SubscriptionStore
    router = _background_router("router", settings)
    consumer = _reader(settings, "earliest")
    store = SubscriptionStore(settings)
    try:
        with Publisher(settings, source="bench") as pub:
            pub.publish("probe.sent", {"n": -1}, tenant=tenant)  # the topic exists before the router looks
        Topics(settings).ensure(settings.trigger_topic("probe"), partitions=1)
        consumer.subscribe([settings.trigger_topic("probe")])
        time.sleep(load_wait)  # 100,000 subscriptions load; the router joins its group
        store.put(name="probe", tenant=tenant, workflow="probe", patterns=["probe.*"])
        acked = time.time()
        sent: dict[int, float] = {}
        with Publisher(settings, source="bench") as pub:
            for n in range(500):
                sent[n] = time.time()
                pub.publish("probe.sent", {"n": n}, tenant=tenant)
                pub.flush()
                for m in consumer.consume(100, 0.02):
                    if not m.error():
                        first = codec.decode_trigger(m.value())["event"].payload()["n"]
                        return max(0.0, sent[first] - acked) if first >= 0 else 0.0
        raise RuntimeError("the probe subscription never took effect")
    finally:
        consumer.close()
        router.kill()
        router.join(10)
