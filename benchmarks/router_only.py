"""The Kafka half of `make bench` alone (passthrough and router at 1,000 and 10,000 subscriptions, the
latency run, the subscription change), on a broker it starts on port 19392: for A/B runs of two commits.

    python -m benchmarks.router_only                     # this checkout
    git worktree add /tmp/base <commit> && cd /tmp && PYTHONPATH=/tmp/base python -m benchmarks.router_only
    python -m benchmarks.router_only --sizes 1000 100000 --events 800000   # longer: steady state at 100,000

(Run an A/B from outside the checkout: `python -m` puts the current directory first on the path.)
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000], help="subscription counts")
    parser.add_argument("--events", type=int, default=200_000,
                        help="events preloaded per size (each run counts those after the first quarter)")
    args = parser.parse_args()
    from router.kafka import local

    from . import run

    with local.fresh(local.LocalCluster(local.default_home(), port=19392)) as bootstrap:
        out = run.bench_kafka(bootstrap, args.sizes, [], args.events, 20, False)
        print(json.dumps({k: out[k] for k in ("passthrough_eps", "router_eps", "latency_ms")}))


if __name__ == "__main__":
    main()
