"""What a Kafka transaction costs by the number of partitions it touches, with no router in the way, through
the bus's client (librdkafka) and, as baselines in the same run, through the Java client and aiokafka
(both put all of a broker's partitions in one ProduceRequest; librdkafka sends one per partition).

    EVBUS_BOOTSTRAP=127.0.0.1:19092 python -m benchmarks.transactions --topics 1 20 200 --per-txn 2000
    EVBUS_BOOTSTRAP=127.0.0.1:19092 python -m benchmarks.transactions --topics 200 --per-txn 400 \
        --client python java aiokafka

Each run: a transactional producer writes `per-txn` 200-byte records spread over N one-partition topics in
one burst, plus the consumer offsets of a 96-partition input (as the router does), and commits; `rounds`
transactions, the first (slow, once per producer and group) left out of the median. It prints records/s
and where a transaction's time goes (produce + flush, send offsets, commit). With several clients, the runs
alternate, each on its own topics.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from router.config import default_bootstrap
from router.kafka import local

PROBE = Path(__file__).parent / "java" / "TxnProbe.java"
STEPS = ("produce_flush_ms", "send_offsets_ms", "commit_ms")


def _prepare(bootstrap: str, topics: int, records: int) -> tuple[list[str], str, str]:
    """N one-partition output topics and a 96-partition input holding `records` records; a fresh group."""
    ns = uuid.uuid4().hex[:6]
    names = [f"txbench.{ns}.t{i}" for i in range(topics)]
    source = f"txbench.{ns}.in"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in names] + [NewTopic(source, 96, 1)]).values():
        f.result()
    loader = Producer({"bootstrap.servers": bootstrap})
    for i in range(records):
        while True:
            try:
                loader.produce(source, b"y", partition=i % 96)
                break
            except BufferError:
                loader.poll(0.05)
    loader.flush(60)
    return names, source, f"txbench-{ns}"


def _python(bootstrap: str, names: list[str], source: str, group: str, per_txn: int, rounds: int):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": group, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})
    producer.init_transactions(30)
    rates, steps = [], []
    for _ in range(rounds):
        got = 0
        while got < per_txn:
            got += len(consumer.consume(per_txn - got, 1))
        start = time.perf_counter()
        producer.begin_transaction()
        for i in range(per_txn):
            producer.produce(names[i % len(names)], b"x" * 200)
        producer.flush(60)
        flushed = time.perf_counter()
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        sent = time.perf_counter()
        producer.commit_transaction(60)
        done = time.perf_counter()
        rates.append(per_txn / (done - start))
        steps.append((flushed - start, sent - flushed, done - sent))
    consumer.close()
    return rates, steps


def _aiokafka(bootstrap: str, names: list[str], source: str, group: str, per_txn: int, rounds: int):
    """The same transaction through aiokafka (offsets committed with the group id alone: TxnOffsetCommit v0),
    with the what-if's producer settings (1 MiB batches: one batch per partition, as the other two clients)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    from .aio import transactional_producer

    async def go():
        consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        producer = transactional_producer(bootstrap, group)
        await consumer.start()
        await producer.start()
        rates, steps = [], []
        try:
            for _ in range(rounds):
                got = 0
                while got < per_txn:
                    got += sum(len(v) for v in (await consumer.getmany(timeout_ms=1000,
                                                                       max_records=per_txn - got)).values())
                start = time.perf_counter()
                await producer.begin_transaction()
                sent = [await producer.send(names[i % len(names)], b"x" * 200) for i in range(per_txn)]
                await asyncio.gather(*sent)
                flushed = time.perf_counter()
                await producer.send_offsets_to_transaction(
                    {tp: await consumer.position(tp) for tp in consumer.assignment()}, group)
                offsets = time.perf_counter()
                await producer.commit_transaction()
                done = time.perf_counter()
                rates.append(per_txn / (done - start))
                steps.append((flushed - start, offsets - flushed, done - offsets))
        finally:
            await consumer.stop()
            await producer.stop()
        return rates, steps
    return asyncio.run(go())


def _java_classes(libs: Path) -> Path:
    """Compile the Java probe against the local broker's own client jar (fetched with the broker)."""
    out = local.default_home() / "txnprobe"
    if not (out / "TxnProbe.class").exists() or (out / "TxnProbe.class").stat().st_mtime < PROBE.stat().st_mtime:
        if shutil.which("javac") is None:
            raise SystemExit("the Java baseline needs javac (a JDK 17+) on PATH")
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(["javac", "-d", str(out), "-cp", f"{libs}/*", str(PROBE)], check=True)
    return out


def _java(bootstrap: str, names: list[str], source: str, group: str, per_txn: int, rounds: int):
    libs = local.fetch(local.LocalCluster(local.default_home()))
    cmd = ["java", "-cp", f"{_java_classes(libs)}:{libs}/*", "TxnProbe", bootstrap, source, group, str(per_txn),
           str(rounds), *names]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the Java probe failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["rates"], [tuple(s) for s in out["steps"]]


CLIENTS = {"python": _python, "java": _java, "aiokafka": _aiokafka}


def run(bootstrap: str, topics: int, per_txn: int, rounds: int = 6, client: str = "python") -> tuple[float, dict]:
    # The Java consumer may read past per_txn in a poll (at most max.poll.records, 500): room for that.
    names, source, group = _prepare(bootstrap, topics, (per_txn + 500) * rounds)
    rates, steps = CLIENTS[client](bootstrap, names, source, group, per_txn, rounds)
    ms = {name: round(1000 * statistics.median(s[i] for s in steps[1:]), 1) for i, name in enumerate(STEPS)}
    return statistics.median(rates[1:]), ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topics", type=int, nargs="+", default=[1, 20, 200])
    parser.add_argument("--per-txn", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6, help="transactions per run; the first is left out")
    parser.add_argument("--repeats", type=int, default=1, help="runs per client and size, alternating")
    parser.add_argument("--client", nargs="+", choices=sorted(CLIENTS), default=["python"])
    args = parser.parse_args()
    bootstrap = default_bootstrap()
    for n in args.topics:
        for repeat in range(args.repeats):
            for client in args.client:
                rate, ms = run(bootstrap, n, args.per_txn, args.rounds, client)
                total = sum(ms.values())
                print(f"{client:>8} {n:>4} partitions per transaction, {args.per_txn} records: {rate:>10,.0f} "
                      f"records/s; median produce+flush {ms['produce_flush_ms']} ms, send offsets "
                      f"{ms['send_offsets_ms']} ms, commit {ms['commit_ms']} ms (sum {total:.1f} ms)", flush=True)


if __name__ == "__main__":
    main()
