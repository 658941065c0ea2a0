"""A router that has met every (tenant, type) pair before, against one that has not, on Kafka: the same
events published twice, the router counted from the first quarter of them (as `make bench` counts: the
first pass's new pairs mostly inside the count) and over the second pass alone (every plan and wire made
by then). On a broker it starts on port 19392.

    python -m benchmarks.warm --sizes 1000 100000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import uuid

from router.config import Settings
from router.kafka.admin import Topics

from . import kafka_runs
from .workload import subscriptions

WAYS = {"from the first quarter": 0.25, "second pass only": 0.625}  # 0.625: a quarter into the second pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--events", type=int, default=200_000, help="distinct events, each published twice")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from router.kafka import local

    out: dict = {}
    with local.fresh(local.LocalCluster(local.default_home(), port=19392)) as bootstrap:
        for n in args.sizes:
            settings = Settings(bootstrap=bootstrap, namespace=f"w{uuid.uuid4().hex[:8]}.", trigger_partitions=1)
            subs = subscriptions(n)
            kafka_runs.load_subscriptions(settings, subs)
            kafka_runs.publish_events(settings, subs, args.events, times=2)
            topic = settings.namespace + "bench.passthrough"
            Topics(settings).ensure(topic)
            out[n] = {way: [] for way in WAYS}
            for _ in range(args.rounds):  # alternating
                for way, share in WAYS.items():
                    r = kafka_runs.route("router", settings, 2 * args.events, topic, warm_share=share)
                    out[n][way].append(round(r["eps"]))
                    print(f"{n:>7,} subscriptions, {way}: {r['eps']:,.0f} events/s over {r['events']:,} events",
                          flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
