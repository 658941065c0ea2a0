"""Does routing throughput hold as workflows grow? The router at 10,000 subscriptions spread over 1, 20, 200
and 1,000 workflows (one trigger topic each, one partition unless --partitions says more), on a broker it
starts on port 19392: each transaction touches up to workflows × partitions trigger partitions.

    python -m benchmarks.workflows [--workflows 1 20 200 1000] [--partitions 1 4] [--events 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import uuid

from router.config import Settings
from router.kafka import local

from . import kafka_runs
from .run import log
from .workload import subscriptions


def bench(bootstrap: str, workflow_counts: list[int], n_subs: int, n_events: int, repeats: int,
          partitions: int = 1) -> dict:
    out = {}
    for w in workflow_counts:
        settings = Settings(bootstrap=bootstrap, namespace=f"w{uuid.uuid4().hex[:8]}.", trigger_partitions=partitions)
        subs = subscriptions(n_subs, workflows=w)
        kafka_runs.load_subscriptions(settings, subs)
        kafka_runs.publish_events(settings, subs, n_events)
        runs = [kafka_runs.route("router", settings, n_events) for _ in range(repeats)]
        eps = statistics.median(r["eps"] for r in runs)
        out[w] = {"eps": round(eps), "commits": [r["commits"] for r in runs]}
        each = ", ".join(f"{r['eps']:,.0f}" for r in runs)
        log(f"{w:>5} workflows × {partitions} partitions, {n_subs:,} subscriptions: router {eps:,.0f} events/s "
            f"(runs: {each})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, nargs="+", default=[1, 20, 200, 1000])
    parser.add_argument("--partitions", type=int, nargs="+", default=[1], help="partitions per trigger topic")
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with local.fresh(local.LocalCluster(local.default_home(), port=19392)) as bootstrap:
        print(json.dumps({p: bench(bootstrap, args.workflows, args.subscriptions, args.events, args.repeats, p)
                          for p in args.partitions}))


if __name__ == "__main__":
    main()
