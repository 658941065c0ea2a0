"""What a Kafka transaction costs by the number of partitions it touches, with no router in the way.

    EVBUS_BOOTSTRAP=127.0.0.1:19092 python -m benchmarks.transactions --topics 1 20 200 --per-txn 2000

Each run: a transactional producer writes `per-txn` 200-byte records spread over N one-partition topics in
one burst, plus the consumer offsets of a 96-partition input (as the router does), and commits; 6
transactions, the first (slow, once per producer and group) left out of the median. It prints records/s
and where a transaction's time goes (produce + flush, send offsets, commit).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from router.config import default_bootstrap


def run(bootstrap: str, topics: int, per_txn: int, rounds: int = 6) -> tuple[float, dict]:
    ns = uuid.uuid4().hex[:6]
    names = [f"txbench.{ns}.t{i}" for i in range(topics)]
    source = f"txbench.{ns}.in"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in names] + [NewTopic(source, 96, 1)]).values():
        f.result()
    loader = Producer({"bootstrap.servers": bootstrap})
    for i in range(per_txn * rounds):
        while True:
            try:
                loader.produce(source, b"y", partition=i % 96)
                break
            except BufferError:
                loader.poll(0.05)
    loader.flush(60)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"txbench-{ns}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txbench-{ns}", "acks": "all",
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
            producer.produce(names[i % topics], b"x" * 200)
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
    ms = {name: round(1000 * statistics.median(s[i] for s in steps[1:]), 1)
          for i, name in enumerate(("produce_flush_ms", "send_offsets_ms", "commit_ms"))}
    return statistics.median(rates[1:]), ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topics", type=int, nargs="+", default=[1, 20, 200])
    parser.add_argument("--per-txn", type=int, default=2000)
    args = parser.parse_args()
    for n in args.topics:
        rate, ms = run(default_bootstrap(), n, args.per_txn)
        print(f"{n:>4} partitions per transaction: {rate:>10,.0f} records/s; median produce+flush "
              f"{ms['produce_flush_ms']} ms, send offsets {ms['send_offsets_ms']} ms, commit {ms['commit_ms']} ms")


if __name__ == "__main__":
    main()
