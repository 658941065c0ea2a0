"""The Kafka half of `make bench` alone (passthrough and router at 1,000 and 10,000 subscriptions, the
latency run, the subscription change), on a broker it starts on port 19392: for A/B runs of two commits.

    python -m benchmarks.router_only                     # this checkout
    git worktree add /tmp/base <commit> && PYTHONPATH=/tmp/base python -m benchmarks.router_only
"""

from __future__ import annotations

import json


def main() -> None:
    from router.kafka import local

    from . import run

    cluster = local.LocalCluster(local.default_home(), port=19392)
    local.down(cluster)
    local.wipe(cluster)
    bootstrap = local.up(cluster)
    try:
        out = run.bench_kafka(bootstrap, [1000, 10_000], [], 200_000, 20, False)
        print(json.dumps({k: out[k] for k in ("passthrough_eps", "router_eps", "latency_ms")}))
    finally:
        local.down(cluster)
        local.wipe(cluster)


if __name__ == "__main__":
    main()
