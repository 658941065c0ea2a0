"""`make chaos`: exactly-once routing and at-least-once delivery under faults, on a 3-node KRaft cluster.

    python -m chaos.run [--quick] [--events N] [--rounds R] [--out chaos-results/latest.json]

A publisher records every acknowledged event; three routers share one group; a runner handles one
workflow; a fixed subscription set (chaos/verify.py) makes the expected triggers computable offline.
Faults, each at a random moment while events flow: router SIGKILL, SIGTERM, SIGSTOP past the session
timeout (a zombie), routers scaled 3 → 1 → 3, SIGKILL of the leader broker of a trigger partition and of
a router's transaction coordinator, a rolling restart of all brokers. A supervisor restarts what exits,
as systemd would. Then the independent verifier (read_committed, plus a read_uncommitted observer)
counts violations, and the report is printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from router.client import Publisher
from router.config import Settings
from router.envelope import codec
from router.kafka import local
from router.kafka.admin import Topics
from router.subscriptions.store import SubscriptionStore

from .verify import SUBSCRIPTIONS, verify

REPO = Path(__file__).resolve().parents[1]
KEYS = 50
STEADY_S = 15  # seconds of steady flow before the first fault
SESSION_TIMEOUT_S = 10  # the consumers' session.timeout.ms (router/kafka/clients.py)
FAULTS = ["router-kill", "router-term", "router-zombie", "scale-3-1-3", "leader-kill", "coordinator-kill",
          "rolling-restart"]


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def java_hash(text: str) -> int:
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


class Fleet:
    """The router and runner processes, supervised: whatever exits is started again (unless scaled down)."""

    def __init__(self, settings: Settings, logs: Path, routers: int) -> None:
        self.env = {**os.environ, "EVBUS_BOOTSTRAP": settings.bootstrap, "EVBUS_NAMESPACE": settings.namespace,
                    "EVBUS_REPLICATION": "3", "EVBUS_TRIGGER_PARTITIONS": "3", "PYTHONUNBUFFERED": "1"}
        self.logs = logs
        self.wanted = set(range(1, routers + 1))
        self.procs: dict[str, subprocess.Popen] = {}
        self.log_files: list[Path] = []
        self.restarts = 0
        self.router_restarts = 0  # each re-initialises its transactional id: its predecessor is fenced
        self.lock = threading.Lock()
        self._stop = threading.Event()

    def _spawn(self, name: str, args: list[str], extra_env: dict | None = None) -> None:
        path = self.logs / f"{name}-{len(self.log_files)}.log"
        self.log_files.append(path)
        with open(path, "w") as out:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "router.cli", *args], cwd=REPO,
                                                env={**self.env, **(extra_env or {})}, stdout=out,
                                                stderr=subprocess.STDOUT)

    def start_router(self, i: int) -> None:
        self._spawn(f"router-{i}", ["route", "--instance", f"chaos-r{i}", "--metrics-port", "0"])

    def start_runner(self, out: Path) -> None:
        self._spawn("runner", ["work", str(REPO / "chaos" / "app.py"), "--metrics-port", "0"],
                    {"CHAOS_OUT": str(out)})
        self.runner_out = out

    def routers(self) -> list[int]:
        return sorted(int(n.split("-")[1]) for n, p in self.procs.items()
                      if n.startswith("router-") and p.poll() is None)

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def stop(self, name: str, timeout: float = 40) -> None:
        proc = self.procs.get(name)
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self.lock:
                for i in sorted(self.wanted):
                    proc = self.procs.get(f"router-{i}")
                    if proc is not None and proc.poll() is not None:
                        log(f"router-{i} exited ({proc.returncode}); restarting it")
                        self.restarts += 1
                        self.router_restarts += 1
                        self.start_router(i)
                runner = self.procs.get("runner")
                if runner is not None and runner.poll() is not None:
                    log(f"runner exited ({runner.returncode}); restarting it")
                    self.restarts += 1
                    self.start_runner(self.runner_out)

    def shutdown(self) -> None:
        self._stop.set()
        for name in list(self.procs):
            self.stop(name)

    def grep(self, *needles: str) -> int:
        return sum(p.read_text(errors="replace").lower().count(n) for p in self.log_files if p.exists()
                   for n in needles)


class Observer(threading.Thread):
    """A read_committed consumer of the trigger topics, timing publish → trigger for every record."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, float]] = []  # (seen at, latency ms, event time)
        self.stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"chaos-obs-{uuid.uuid4().hex[:6]}",
                                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self.consumer.subscribe([settings.trigger_topic(wf) for wf, _, _ in SUBSCRIPTIONS.values()])

    def run(self) -> None:
        while not self.stop.is_set():
            for m in self.consumer.consume(500, 0.1):
                if m.error():
                    continue
                now = time.time()
                sent = codec.decode_trigger(m.value())["event"].time.timestamp()
                self.samples.append((now, (now - sent) * 1000, sent))
        self.consumer.close()


class Load(threading.Thread):
    """Publishes `count` events at `rate`/s, then `tail_rate`/s until stopped (so that the last faults
    have events after them too); remembers the payload of every acknowledged one."""

    def __init__(self, settings: Settings, count: int, rate: float, tail_rate: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.settings, self.count, self.rate, self.tail_rate = settings, count, rate, tail_rate
        self.payloads: dict[str, dict] = {}
        self.publisher = Publisher(settings, source="chaos")
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        n = 0
        while n < self.count or not self.stop.is_set():
            due = start + n / self.rate if n < self.count else time.perf_counter() + 1 / self.tail_rate
            while (delay := due - time.perf_counter()) > 0:
                time.sleep(min(delay, 0.01))
            key = f"k{n % KEYS}"
            payload = {"n": n, "key": key, "seq": n // KEYS}
            event_id = self.publisher.publish("chaos.tick", payload, tenant="chaos", key=key)
            self.payloads[event_id] = payload
            n += 1
        try:
            self.publisher.flush(300)
        except Exception as exc:  # some were not acknowledged (broker faults): they are not expected
            self.errors.append(str(exc))

    def acked(self) -> dict[str, dict]:
        return {i: self.payloads[i] for i in self.publisher.acked}


def _leader_of(settings: Settings, topic: str, partition: int) -> int:
    meta = Topics(settings)._admin.list_topics(topic, timeout=20)
    return meta.topics[topic].partitions[partition].leader


def inject(kind: str, fleet: Fleet, cluster: local.LocalCluster, settings: Settings, rng: random.Random) -> str:
    live = fleet.routers() or [1]
    if kind == "router-kill":
        i = rng.choice(live)
        fleet.signal(f"router-{i}", signal.SIGKILL)  # the supervisor restarts it with the same id
        return f"router-{i} SIGKILL"
    if kind == "router-term":
        i = rng.choice(live)
        fleet.signal(f"router-{i}", signal.SIGTERM)
        return f"router-{i} SIGTERM"
    if kind == "router-zombie":
        i = rng.choice(live)
        fleet.signal(f"router-{i}", signal.SIGSTOP)
        time.sleep(SESSION_TIMEOUT_S + 5)  # its partitions go to the others; then it wakes up
        fleet.signal(f"router-{i}", signal.SIGCONT)
        return f"router-{i} SIGSTOP {SESSION_TIMEOUT_S + 5}s, then SIGCONT"
    if kind == "scale-3-1-3":
        keep = rng.choice(live)
        with fleet.lock:
            fleet.wanted = {keep}
        for i in live:
            if i != keep:
                fleet.stop(f"router-{i}")
        time.sleep(8)
        with fleet.lock:
            fleet.wanted = {1, 2, 3}
            for i in (1, 2, 3):
                if i not in fleet.routers():
                    fleet.start_router(i)
        return f"routers 3 → 1 (router-{keep}) → 3"
    if kind == "leader-kill":
        topic = settings.trigger_topic("chaos-all")
        node = _leader_of(settings, topic, rng.randrange(3))
        local.stop_node(cluster, node, signal.SIGKILL)
        time.sleep(6)
        local.start_node(cluster, node)
        return f"broker {node} (leader of a {topic} partition) SIGKILL, restarted after 6 s"
    if kind == "coordinator-kill":
        i = rng.choice(live)
        partition = abs(java_hash(f"evbus-router-chaos-r{i}")) % 4  # transaction.state.log.num.partitions
        node = _leader_of(settings, "__transaction_state", partition)
        local.stop_node(cluster, node, signal.SIGKILL)
        time.sleep(6)
        local.start_node(cluster, node)
        return f"broker {node} (transaction coordinator of router-{i}) SIGKILL, restarted after 6 s"
    if kind == "rolling-restart":
        for node in range(1, cluster.nodes + 1):
            local.stop_node(cluster, node, signal.SIGTERM)
            local.start_node(cluster, node)
            time.sleep(3)
        return "rolling restart of brokers 1, 2, 3"
    raise ValueError(kind)


def router_lag(settings: Settings) -> int:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": settings.router_group,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        topic = settings.events_topic("chaos.tick")
        parts = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=20).topics[topic].partitions]
        lag = 0
        for tp in consumer.committed(parts, timeout=20):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=20, cached=False)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def handled(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.split(":", 1)[0] for line in path.read_text().splitlines() if line}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="about 20,000 events, one fault of each kind")
    parser.add_argument("--events", type=int)
    parser.add_argument("--rounds", type=int, help="how many times each fault kind is injected")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EVBUS_CHAOS_PORT", "19800")))
    parser.add_argument("--out", default="chaos-results/latest.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))  # stop: the finally blocks stop processes and cluster
    events = args.events or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    rng = random.Random(args.seed)
    out_path = Path(args.out)
    logs = out_path.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(timezone.utc).isoformat()

    cluster = local.LocalCluster(local.default_home(), port=args.port, nodes=3)
    local.down(cluster)
    local.wipe(cluster)
    log(f"starting a 3-node cluster on {cluster.bootstrap}")
    try:
        report = _run(args, cluster, rng, events, rounds, logs, started_at)
    finally:  # whatever happened (SIGTERM included): no broker is left running
        local.down(cluster)
        local.wipe(cluster)
    out_path.write_text(json.dumps(report, indent=2, default=str))
    _print(report)
    log(f"wrote {out_path}")
    sys.exit(0 if sum(report["violations"].values()) == 0 and report["lag_after"] == 0 else 1)


def _run(args, cluster, rng, events, rounds, logs, started_at) -> dict:
    bootstrap = local.up(cluster)
    settings = Settings(bootstrap=bootstrap, namespace=f"chaos{uuid.uuid4().hex[:6]}.", replication_factor=3,
                        topic_partitions=6, trigger_partitions=3)
    fleet = Fleet(settings, logs, 3)
    observer = None
    try:
        Topics(settings).ensure_bus_topics()
        Topics(settings).ensure(settings.events_topic("chaos.tick"), partitions=6)
        store = SubscriptionStore(settings)
        for name, (wf, flt, _) in SUBSCRIPTIONS.items():
            store.put(name=name, tenant="chaos", workflow=wf, patterns=["chaos.*"], filter=flt)
        for i in (1, 2, 3):
            fleet.start_router(i)
        (logs.parent / "handled.txt").unlink(missing_ok=True)
        fleet.start_runner(logs.parent / "handled.txt")
        threading.Thread(target=fleet.supervise, daemon=True).start()
        observer = Observer(settings)
        observer.start()
        kinds = [k for _ in range(rounds) for k in rng.sample(FAULTS, len(FAULTS))]
        seconds = max(60.0, len(kinds) * 30.0)  # the faults take about this long; events spread over it
        load = Load(settings, events, events / (seconds + STEADY_S + 10))
        time.sleep(8)  # routers join
        load.start()
        faults: list[dict] = []
        time.sleep(10)  # warm-up: the first transactions of new producers and groups are slow on Kafka
        steady_from = time.time()
        time.sleep(STEADY_S)  # steady state, no fault: the latency baseline
        for kind in kinds:
            time.sleep(rng.uniform(2, 6))
            at = time.time()
            what = inject(kind, fleet, cluster, settings, rng)
            faults.append({"kind": kind, "at": at, "what": what, "done": time.time()})
            log(f"fault {len(faults)}/{len(kinds)}: {what}")
            time.sleep(3)
        time.sleep(10)  # events after the last fault: its recovery is measured too
        load.stop.set()
        load.join()
        log(f"published {len(load.payloads):,} events, {len(load.publisher.acked):,} acknowledged; waiting for lag 0")
        deadline = time.time() + 300
        while (lag := router_lag(settings)) > 0 and time.time() < deadline:
            time.sleep(2)
        acked = load.acked()
        want_all = {i for i, p in acked.items()}
        deadline = time.time() + 300
        while len(want_all - handled(fleet.runner_out)) and time.time() < deadline:
            time.sleep(2)
        time.sleep(2)
    finally:
        if observer is not None:
            observer.stop.set()
        fleet.shutdown()
    result = verify(bootstrap, settings.namespace, acked, handled(fleet.runner_out))
    return _report(args, started_at, load, acked, faults, fleet, observer, result, lag, steady_from)


def _report(args, started_at, load, acked, faults, fleet, observer, result, lag, steady_from) -> dict:
    """Latency "steady": triggers read in the fault-free stretch after the warm-up, before the first fault;
    "under faults": every trigger read from the first fault on (backlogs drained after faults included)."""
    samples = observer.samples
    first_fault = faults[0]["at"] if faults else float("inf")
    steady = [ms for at, ms, _ in samples if steady_from <= at < first_fault]
    under = [ms for at, ms, _ in samples if at >= first_fault]
    recovery: dict[str, list[float]] = {}
    for f in faults:  # until a trigger of an event published after the fault was committed and read
        after = [seen for seen, _, sent in samples if sent > f["done"]]
        recovery.setdefault(f["kind"], []).append(round(min(after) - f["at"], 2) if after else None)
    by_kind: dict[str, int] = {}
    for f in faults:
        by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
    return {
        "started_at": started_at, "finished_at": datetime.now(timezone.utc).isoformat(), "seed": args.seed,
        "quick": args.quick, "cluster": "3 KRaft nodes (combined broker+controller), RF 3, min.insync.replicas 2",
        "events": {"published": len(load.payloads), "acknowledged": len(acked), "publisher_errors": load.errors[:3]},
        "expected_triggers": result["expected_triggers"],
        "faults": by_kind, "fault_log": [{k: f[k] for k in ("kind", "what")} for f in faults],
        "aborted_transactions": {"aborted_records_seen_read_uncommitted": result["aborted_records"],
                                 "aborts_logged_by_routers": fleet.grep("aborting", "transaction aborted")},
        "fenced_producers": {"zombie_lost_its_partitions": fleet.grep("partitions lost"),
                             "producer_fenced_errors": fleet.grep("fenced"),
                             "predecessor_fenced_by_restart": fleet.router_restarts},
        "process_restarts": fleet.restarts,
        "violations": result["violations"], "lag_after": lag, "recovery_s": recovery,
        "latency_ms": {"steady": _pcts(steady), "under_faults": _pcts(under)}, "detail": result["detail"],
    }


def _pcts(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "samples": 0}
    values = sorted(values)
    return {"p50": round(statistics.median(values), 1), "p99": round(values[max(0, int(len(values) * 0.99) - 1)], 1),
            "samples": len(values)}


def _print(r: dict) -> None:
    print(f"\nevents published {r['events']['published']:,}, acknowledged {r['events']['acknowledged']:,}; "
          f"expected triggers {r['expected_triggers']:,}")
    print("faults: " + ", ".join(f"{k} ×{v}" for k, v in r["faults"].items()))
    print(f"aborted: {r['aborted_transactions']}; fenced producers: {r['fenced_producers']}; "
          f"process restarts: {r['process_restarts']}")
    print(f"violations: {r['violations']} (total {sum(r['violations'].values())}); lag after: {r['lag_after']}")
    print(f"recovery (s): {r['recovery_s']}")
    print(f"latency ms: steady {r['latency_ms']['steady']}; under faults {r['latency_ms']['under_faults']}")


if __name__ == "__main__":
    main()
