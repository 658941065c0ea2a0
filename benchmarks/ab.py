"""A/B of the router (or the passthrough) from two checkouts on one broker, alternating: this VM's speed
drifts by the hour, so a change is only seen in runs made side by side on the same warmed broker.

    git worktree add /tmp/base <commit>      # its C parts: copy the built .so files in, or pip install it
    python -m benchmarks.ab /tmp/base .                      # router, 10,000 subscriptions, 4 rounds
    python -m benchmarks.ab /tmp/base . --kind passthrough --subscriptions 1000 --rounds 6

Each run is a fresh router process (`kafka_runs.route`) started from the given checkout's code, over the
same preloaded events; the order alternates each round (A B, B A, ...). Before the first round one
router pass warms the broker (a fresh broker's JIT compiler took 45 % of a core in the first pass).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from contextlib import nullcontext
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, help="two checkouts: A (the baseline) and B")
    parser.add_argument("--kind", choices=["router", "passthrough"], default="router")
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000, help="preloaded; each run counts those after "
                                                                     "the first quarter")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--port", type=int, default=19392, help="of the broker it starts")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = parser.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees]
    for tree in trees:
        if not (Path(tree) / "router" / "router.py").is_file():
            parser.error(f"{tree} is not a checkout of this project (no router/router.py)")

    from router.config import Settings
    from router.kafka import local
    from router.kafka.admin import Topics

    from . import kafka_runs
    from .workload import subscriptions

    broker = (nullcontext(args.bootstrap) if args.bootstrap
              else local.fresh(local.LocalCluster(local.default_home(), port=args.port)))
    # A spawned process imports the parent's __main__ again, by module name unless it has no spec: by path
    # instead, so a tree from before this file existed can still be A.
    sys.modules["__main__"].__spec__ = None
    runs: list[list[float]] = [[], []]  # A, B (the same tree twice is allowed: a noise check)
    with broker as bootstrap:
        settings = Settings(bootstrap=bootstrap, namespace=f"b{uuid.uuid4().hex[:8]}.", trigger_partitions=1)
        subs = subscriptions(args.subscriptions)
        kafka_runs.load_subscriptions(settings, subs)
        kafka_runs.publish_events(settings, subs, args.events)
        out_topic = settings.namespace + "bench.passthrough"
        Topics(settings).ensure(out_topic)
        kafka_runs.route(args.kind, settings, args.events, out_topic)  # warm the broker
        for r in range(args.rounds):
            for side in (0, 1) if r % 2 == 0 else (1, 0):
                tree = trees[side]
                sys.path.insert(0, tree)  # a spawned process takes its parent's sys.path: its code is the tree's
                try:
                    out = kafka_runs.route(args.kind, settings, args.events, out_topic)
                finally:
                    sys.path.remove(tree)
                runs[side].append(out["eps"])
                print(f"round {r + 1}: {'AB'[side]} {tree}: {out['eps']:,.0f} events/s ({out['commits']} commits)",
                      flush=True)
    a, b = (statistics.median(x) for x in runs)
    print(f"{args.kind}, {args.subscriptions:,} subscriptions, medians of {args.rounds}: A {a:,.0f}, B {b:,.0f} "
          f"events/s, B/A {b / a:.3f}")
    print(json.dumps({"kind": args.kind, "subscriptions": args.subscriptions, "a": trees[0], "b": trees[1],
                      "a_eps": [round(x) for x in runs[0]], "b_eps": [round(x) for x in runs[1]]}))


if __name__ == "__main__":
    main()
