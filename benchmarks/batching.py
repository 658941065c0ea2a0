"""What-if: the router's transactions through a client that puts all of a broker's partitions in one
ProduceRequest (aiokafka), beside the router as it is (librdkafka, one ProduceRequest per partition), in
the same run. It asks how far publish → trigger latency would fall if only the client changed.

    evbus kafka up --port 19392 && EVBUS_BOOTSTRAP=127.0.0.1:19392 python -m benchmarks.batching --rounds 3
    ... python -m benchmarks.batching --rates --events 200000 --rounds 3     (throughput instead)

Not a product path: `WhatIfCheckpoint` commits offsets with the consumer's group metadata (KIP-447, through
benchmarks/kip447.py, which replaces a private handler of aiokafka), but has no abort or isolation of a
record that cannot be delivered, writes every trigger topic's partition 0, compresses only with
--compression lz4 (the router's librdkafka producer always uses lz4) and does not bound what it buffers
(the router's `max_buffered`). It exists to measure; the router never uses it. Each round runs the latency
phases of `make bench` (and with --events, the router's throughput run) once per client, alternating, in one
namespace; the router process is kafka_runs' own, given this checkpoint (kafka_runs.CheckpointSpec).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
import uuid

from router.config import Settings, default_bootstrap

from . import kafka_runs, kip447
from .aio import transactional_producer
from .workload import subscriptions

CLIENTS = ("librdkafka", "aiokafka")


class WhatIfCheckpoint:
    """The router's checkpoint contract (send / start_commit / finish_commit / commit) over aiokafka, on an
    event loop thread of its own. Records are encoded into one batch per topic on the routing thread as they
    are sent; a commit hands the batches over, sends the consumer's positions and commits."""

    def __init__(self, producer, consumer, max_buffered: int = 50_000, *, bootstrap: str,
                 compression: str | None = None) -> None:
        # the router's librdkafka producer is left unused, and so is max_buffered
        self._consumer = consumer
        kip447.install()
        self.pending, self.opened_at, self.last_commit_s, self.checked = 0, time.monotonic(), 0.0, False
        self._batches: dict[str, list] = {}
        self._future = None
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="aiokafka", daemon=True).start()

        async def start():
            p = transactional_producer(bootstrap, f"whatif-{uuid.uuid4().hex[:8]}", compression)
            await p.start()
            await p.begin_transaction()
            return p
        self._producer = self._call(start())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(120)

    def send(self, topic: str, key, value, headers) -> None:
        batches = self._batches.get(topic)
        if batches is None:
            batches = self._batches[topic] = [self._producer.create_batch()]
        if batches[-1].append(timestamp=None, key=key, value=value, headers=list(headers or ())) is None:
            batches.append(self._producer.create_batch())
            batches[-1].append(timestamp=None, key=key, value=value, headers=list(headers or ()))

    @property
    def in_flight(self) -> bool:
        return self._future is not None and not self._future.done()

    @property
    def commit_settled(self) -> bool:
        return self._future is not None and self._future.done()

    def commit(self) -> None:
        self.start_commit()
        self.finish_commit()

    def finish_commit(self) -> None:
        if self._future is not None:
            future, self._future = self._future, None
            future.result(120)

    def start_commit(self) -> None:
        from aiokafka.structs import TopicPartition

        self.finish_commit()
        if self.pending == 0:
            return
        batches, self._batches = self._batches, {}
        positions = {TopicPartition(tp.topic, tp.partition): tp.offset
                     for tp in self._consumer.position(self._consumer.assignment()) if tp.offset >= 0}
        group = kip447.GroupMetadata.parse(self._consumer.consumer_group_metadata())  # as the positions are taken
        self.pending, self.opened_at = 0, time.monotonic()

        async def commit():
            started, p = time.monotonic(), self._producer
            sent = [await p.send_batch(b, topic, partition=0) for topic, bs in batches.items() for b in bs]
            await asyncio.gather(*sent)
            await p.send_offsets_to_transaction(positions, group)
            await p.commit_transaction()
            await p.begin_transaction()
            self.last_commit_s = time.monotonic() - started
        self._future = asyncio.run_coroutine_threadsafe(commit(), self._loop)

    def abort(self, rewind: bool = True) -> None:
        raise RuntimeError("the what-if checkpoint does not abort: a measurement, not a product path")


def checkpoint(client: str, settings: Settings, compression: str | None) -> kafka_runs.CheckpointSpec | None:
    """What kafka_runs gives the router process: None keeps the router's own checkpoint (librdkafka)."""
    if client == "librdkafka":
        return None
    return f"{__name__}:WhatIfCheckpoint", {"bootstrap": settings.bootstrap, "compression": compression}


def _ran(client: str, name: str) -> None:
    expected = "Checkpoint" if client == "librdkafka" else "WhatIfCheckpoint"
    if name != expected:
        raise RuntimeError(f"the {client} router ran {name}, not {expected}")


def throughput(settings: Settings, subs, events: int, rounds: int, compression: str | None) -> dict:
    """The router's events/s over `events` preloaded events (kafka_runs.route, the Kafka half of `make bench`),
    once per client and round, alternating."""
    kafka_runs.publish_events(settings, subs, events)
    out: dict = {client: [] for client in CLIENTS}
    for _ in range(rounds):
        for client in out:
            r = kafka_runs.route("router", settings, events, checkpoint=checkpoint(client, settings, compression))
            _ran(client, r["checkpoint"])
            out[client].append(round(r["eps"]))
            print(f"{client:>10}: router {out[client][-1]:,} events/s ({r['commits']} commits)", flush=True)
    return out


def run(bootstrap: str, n: int, rates: list[int], seconds: float, rounds: int, warm: int, events: int = 0,
        compression: str | None = None) -> dict:
    subs = subscriptions(n)
    # One namespace for every run: each new one adds its topics to the metadata every client asks for.
    settings = Settings(bootstrap=bootstrap, namespace=f"w{uuid.uuid4().hex[:8]}.", trigger_partitions=1)
    kafka_runs.load_subscriptions(settings, subs)
    result = {"throughput_eps": throughput(settings, subs, events, rounds, compression)} if events else {}
    if not rates:
        return result
    out: dict = {client: [] for client in CLIENTS}
    result["latency_ms"] = out
    for _ in range(rounds):
        for client in CLIENTS:
            by_rate = kafka_runs.latency(settings, subs, rates, seconds, warm,
                                         checkpoint=checkpoint(client, settings, compression))
            _ran(client, next(iter(by_rate.values()))["checkpoint"])
            row = {rate: {"p50": round(r["p50"], 1), "p99": round(r["p99"], 1), "samples": r["samples"]}
                   for rate, r in by_rate.items()}
            out[client].append(row)
            print(f"{client:>10}: " + ", ".join(f"{rate}/s p50 {r['p50']} ms p99 {r['p99']} ms"
                                                for rate, r in row.items()), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--rates", type=int, nargs="*", default=[100, 500, 2000], help="none: no latency run")
    parser.add_argument("--events", type=int, default=0, help="preloaded events of a throughput run (0: none)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--compression", choices=["none", "lz4"], default="none",
                        help="the what-if's batches (the router's librdkafka producer always uses lz4)")
    parser.add_argument("--out", default="bench-results/batching.json")
    args = parser.parse_args()
    result = run(default_bootstrap(), args.subscriptions, args.rates, args.seconds, args.rounds, args.warm,
                 args.events, None if args.compression == "none" else args.compression)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
