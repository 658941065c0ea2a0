"""The runner's concurrency: a 20 ms handler at concurrency 1 and at concurrency 32, same triggers, same
broker, one run; per-key order checked on every call.

    EVBUS_BOOTSTRAP=127.0.0.1:19092 python -m benchmarks.delivery [--quick]

Triggers (64 keys, a sequence number per key) are written straight to a trigger topic; a WorkflowWorker
in this process handles them. Throughput = triggers / (last call's end - first call's start).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from confluent_kafka import Producer

from router.config import Settings
from router.delivery.worker import WorkflowWorker
from router.envelope import codec
from router.envelope.model import new_event
from router.kafka.admin import Topics
from router.runner import WorkflowSpec

KEYS = 64


def load(settings: Settings, workflow: str, count: int) -> None:
    topic = settings.trigger_topic(workflow)
    Topics(settings).ensure(topic, partitions=4)
    # idempotent: a retried batch (a fresh topic's leaders are still being elected) cannot land after a
    # later one, which would show as a per-key order violation that is the loader's, not the runner's
    producer = Producer({"bootstrap.servers": settings.bootstrap, "linger.ms": 10, "enable.idempotence": True})
    for i in range(count):
        key, seq = f"k{i % KEYS}", i // KEYS
        event = new_event("bench.item", {"key": key, "seq": seq}, tenant="bench", source="bench", max_bytes=1 << 20)
        body = codec.encode_event(event)[codec.HEADER.size:]
        value = codec.encode_trigger_from_body(body, subscription="bench", tenant="bench", workflow=workflow,
                                               routed_at=event.time, idempotency_key=f"{event.id}:bench")
        producer.produce(topic, value=value, key=key.encode())
    assert producer.flush(60) == 0


def run(settings: Settings, concurrency: int, count: int, handler_s: float = 0.02, timeout: float = 300) -> dict:
    workflow = f"bench-c{concurrency}-{uuid.uuid4().hex[:6]}"
    load(settings, workflow, count)
    lock = threading.Lock()
    last_seq: dict[str, int] = {}
    spans: list[tuple[float, float]] = []
    violations = [0]

    def handler(trigger) -> None:
        start = time.perf_counter()
        time.sleep(handler_s)
        data = trigger.data
        with lock:
            if data["seq"] != last_seq.get(data["key"], -1) + 1:
                violations[0] += 1
            last_seq[data["key"]] = data["seq"]
            spans.append((start, time.perf_counter()))

    stopping = threading.Event()
    worker = WorkflowWorker(settings, WorkflowSpec(workflow, handler, concurrency=concurrency), stopping)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + timeout
    while len(spans) < count and time.monotonic() < deadline and worker.error is None:
        time.sleep(0.05)
    stopping.set()
    thread.join(60)
    if len(spans) < count:
        raise RuntimeError(f"concurrency {concurrency}: {len(spans)}/{count} handled ({worker.error})")
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    return {"per_s": count / (last - first), "triggers": count, "order_violations": violations[0]}


def bench(settings: Settings, quick: bool) -> dict:
    one = run(settings, 1, 40 if quick else 200)
    many = run(settings, 32, 400 if quick else 4000)
    return {"handler_ms": 20, "c1_per_s": round(one["per_s"], 1), "c32_per_s": round(many["per_s"], 1),
            "ratio": round(many["per_s"] / one["per_s"], 1),
            "order_violations": one["order_violations"] + many["order_violations"],
            "triggers": {"c1": one["triggers"], "c32": many["triggers"]}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env(namespace=f"d{uuid.uuid4().hex[:8]}.")
    r = bench(settings, args.quick)
    print(f"20 ms handler: concurrency 1 {r['c1_per_s']:,} triggers/s, concurrency 32 {r['c32_per_s']:,} "
          f"triggers/s: {r['ratio']}x; per-key order violations: {r['order_violations']}")


if __name__ == "__main__":
    main()
