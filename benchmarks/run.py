"""`make bench`: every figure side by side with its baseline, in one run, on a broker this run starts.

    python -m benchmarks.run [--quick] [--out bench-results/latest.json]

Prints a table and writes JSON with: passthrough_eps, router_eps, naive_eps, match_only_eps (keyed by
subscription count), latency_ms (p50, p99, rate; at 2,000 events/s), latency_by_rate (the same at
100 and 500 events/s too), sub_change_s, bytes_per_subscription, machine, started_at; router_cpu_us and
router_cpu_route_py_us (the router's own CPU per event, as it routes and with every record through
Router._route: the C common case's baseline);
match_only_python_walk_eps (matching alone with the plan walk in Python instead of C); router_detail (every
passthrough and router run of which passthrough_eps and router_eps are the medians) and run_detail (what
each of those runs counted: events and seconds after warm-up, commits, start-up, and commit_ms, its commits' mean ms by phase); spread_eps (the
passthrough writing to the trigger topics in turn instead of one topic: the Kafka cost of the router's
output shape, benchmarks/kafka_runs.py `_Spread`); output_eps (the same writing as many records per event
as the router writes triggers at that size, output_copies: what the router's output alone costs Kafka, with
no decoding or matching);
delivery: the runner's 20 ms handler at concurrency 1 and 32 (benchmarks/delivery.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from router.config import Settings
from router.kafka import local
from router.kafka.admin import Topics
from router.matching import index as index_module

from . import delivery, hotpath, kafka_runs, matching
from .workload import subscriptions


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "kernel": platform.release()}


def bench_matching(sizes, naive_sizes, n_events, budget) -> tuple[dict, dict, dict]:
    match_only, naive, detail = {}, {}, {}
    for n in sizes:
        subs = subscriptions(n)
        index = matching.build_index(subs)
        evs = matching.encoded_events(subs, n_events)
        r = matching.index_eps(index, evs)
        match_only[n] = round(r["eps"])
        detail[n] = r
        log(f"match only, {n:>7,} subscriptions: {r['eps']:>10,.0f} events/s  {r['us_per_event']:.1f} µs/event  "
            f"{r['matches_per_event']:.2f} matches/event")
        if index_module.native is not None:  # the baseline of the C plan walk, same index, same events
            index_module.candidates = index_module.candidates_py
            try:
                r["python_walk_eps"] = round(matching.index_eps(index, evs)["eps"])
            finally:
                index_module.candidates = index_module.native.candidates
            log(f"match only, {n:>7,} subscriptions, the plan walk in Python: {r['python_walk_eps']:>10,} events/s")
        if n in naive_sizes:
            nr = matching.naive_eps(subs, evs, budget)
            naive[n] = round(nr["eps"], 1)
            log(f"naive evaluate-all, {n:>7,}: {nr['eps']:>10,.1f} events/s over {nr['events']} events"
                + (" (cut short by time)" if nr["cut_short"] else ""))
    return match_only, naive, detail


def memory_per_subscription(n: int) -> float:
    """In a fresh interpreter, so freed memory of earlier runs does not hide what the index takes."""
    code = ("from benchmarks.matching import bytes_per_subscription; from benchmarks.workload import subscriptions;"
            f"print(bytes_per_subscription(subscriptions({n})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_kafka(bootstrap: str, sizes, naive_sizes, n_events, latency_s, quick,
                copies: dict[int, float] | None = None) -> dict:
    """`copies`: the router's matches per event by size, for the passthrough at the router's output."""
    out: dict = {"passthrough_eps": {}, "spread_eps": {}, "output_eps": {}, "output_copies": {}, "router_eps": {},
                 "naive_eps_kafka": {}, "router_detail": {}, "run_detail": {}}
    for n in sizes:
        settings = Settings(bootstrap=bootstrap, namespace=f"b{uuid.uuid4().hex[:8]}.", trigger_partitions=1)
        subs = subscriptions(n)
        log(f"loading {n:,} subscriptions and {n_events:,} events (namespace {settings.namespace})")
        kafka_runs.load_subscriptions(settings, subs)
        kafka_runs.publish_events(settings, subs, n_events)
        out_topic = settings.namespace + "bench.passthrough"
        Topics(settings).ensure(out_topic)
        spread = [settings.trigger_topic(wf) for wf in sorted({s.workflow for s in subs})]
        outs = {"passthrough": out_topic, "router": out_topic, "spread": spread, "output": spread}
        runs: dict[str, list] = {"passthrough": [], "spread": [], "router": []}
        if copies and n in copies:
            runs["output"] = []
            out["output_copies"][n] = copies[n]
        detail: dict[str, list] = {kind: [] for kind in runs}
        for _ in range(1 if quick else 3):  # alternate, so drift hits all alike; medians
            for kind in runs:
                r = kafka_runs.route(kind, settings, n_events, outs[kind], copies=(copies or {}).get(n, 1.0))
                runs[kind].append(r["eps"])
                detail[kind].append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
        for kind in runs:
            out[f"{kind}_eps"][n] = round(statistics.median(runs[kind]))
        out["router_detail"][n] = {kind: [round(r) for r in rs] for kind, rs in runs.items()}  # every run
        out["run_detail"][n] = detail  # and what each counted: events, seconds, commits, start-up
        log(f"kafka, {n:>7,} subscriptions: passthrough {out['passthrough_eps'][n]:,} events/s, "
            f"router {out['router_eps'][n]:,} events/s ({out['router_eps'][n] / out['passthrough_eps'][n]:.0%}); "
            f"passthrough over the trigger topics {out['spread_eps'][n]:,} events/s "
            f"(router {out['router_eps'][n] / out['spread_eps'][n]:.0%} of it); "
            + (f"writing {copies[n]:.2f} records per event, as the router does, {out['output_eps'][n]:,} events/s "
               f"(router {out['router_eps'][n] / out['output_eps'][n]:.0%} of it); " if "output" in runs else "")
            + f"medians of {out['router_detail'][n]}")
        if n in naive_sizes:
            r = kafka_runs.route("naive", settings, min(n_events, 12_000 if n >= 10_000 else 60_000), out_topic)
            out["naive_eps_kafka"][n] = round(r["eps"], 1)
            log(f"kafka, {n:>7,} subscriptions: naive router {r['eps']:,.1f} events/s over {r['events']} events")
        if n == max(sizes):
            tenant = subs[0].tenant
            out["sub_change_s"] = round(kafka_runs.subscription_change(settings, tenant, 5 if quick else 20), 3)
            log(f"subscription change live at {n:,} subscriptions after {out['sub_change_s']} s")
        if n == (10_000 if 10_000 in sizes else max(sizes)):
            rates = [2000] if quick else [100, 500, 2000]  # the target is at 2,000/s; the others show the trend
            by_rate = kafka_runs.latency(settings, subs, rates, latency_s, 100 if quick else 300)
            out["latency_by_rate"] = {}
            for rate, r in by_rate.items():
                r = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} | {"subscriptions": n}
                out["latency_by_rate"][rate] = r
                log(f"latency at {rate}/s, {n:,} subscriptions: p50 {r['p50']} ms, p99 {r['p99']} ms")
            out["latency_ms"] = out["latency_by_rate"][2000]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the seconds-long smoke version")
    parser.add_argument("--out", default="bench-results/latest.json")
    args = parser.parse_args()
    quick = args.quick
    started = datetime.now(timezone.utc).isoformat()
    sizes = [1000, 10_000] if quick else [1000, 10_000, 100_000]
    result: dict = {"machine": machine(), "started_at": started, "quick": quick}
    match_only, naive, detail = bench_matching(sizes, [1000, 10_000], 2000 if quick else 20_000, 2 if quick else 20)
    result.update(match_only_eps=match_only, naive_eps=naive, match_detail=detail,
                  match_only_python_walk_eps={n: d.get("python_walk_eps") for n, d in detail.items()})
    result["router_cpu_us"], result["router_cpu_route_py_us"] = {}, {}
    for n in sizes:  # the router's own CPU per event, Kafka taken out (benchmarks/hotpath.py)
        r = hotpath.us_per_event(n, 2000 if quick else 20_000)
        result["router_cpu_us"][n] = r["us_per_event"]
        result["router_cpu_route_py_us"][n] = r.get("route_us_per_event")
        log(f"router CPU alone, {n:>7,} subscriptions: {r['us_per_event']} µs/event "
            f"({r['events_per_s']:,} events/s on one core); every record through Router._route instead of "
            f"the C common case {r.get('route_us_per_event', '-')} µs/event")
    result["bytes_per_subscription"] = round(memory_per_subscription(10_000 if quick else 100_000))
    log(f"memory: {result['bytes_per_subscription']} bytes per subscription")

    given = os.environ.get("EVBUS_BENCH_BOOTSTRAP")
    port = int(os.environ.get("EVBUS_BENCH_PORT", "19392"))
    with nullcontext(given) if given else local.fresh(local.LocalCluster(local.default_home(), port=port)) as bootstrap:
        log(f"broker at {bootstrap}")
        copies = {n: round(d["matches_per_event"], 4) for n, d in detail.items()}  # the router's output per event
        result.update(bench_kafka(bootstrap, [1000] if quick else sizes, [1000, 10_000],
                                  24_000 if quick else 200_000, 3 if quick else 20, quick, copies))
        result["delivery"] = delivery.bench(Settings(bootstrap=bootstrap, namespace=f"d{uuid.uuid4().hex[:8]}."),
                                            quick)
        d = result["delivery"]
        log(f"runner, 20 ms handler: concurrency 1 {d['c1_per_s']}/s, concurrency 32 {d['c32_per_s']}/s "
            f"({d['ratio']}x); per-key order violations {d['order_violations']}")
    result["finished_at"] = datetime.now(timezone.utc).isoformat()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print_table(result)
    log(f"wrote {out}")


def print_table(r: dict) -> None:
    print("\n| subscriptions | match only (events/s) | naive match (events/s) | router CPU alone (µs/event) "
          "| passthrough (events/s) | router (events/s) | router / passthrough "
          "| passthrough over the trigger topics (events/s) | router / it "
          "| passthrough at the router's output (records per event) | router / it |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted(r["match_only_eps"]):
        pt, ro, sp = r["passthrough_eps"].get(n), r["router_eps"].get(n), r.get("spread_eps", {}).get(n)
        op, copies = r.get("output_eps", {}).get(n), r.get("output_copies", {}).get(n)
        ratio = f"{ro / pt:.0%}" if pt and ro else "-"
        spread = f"{ro / sp:.0%}" if sp and ro else "-"
        output = f"{op:,} ({copies})" if op else "-"
        print(f"| {n:,} | {r['match_only_eps'][n]:,} | {r['naive_eps'].get(n, '-')} "
              f"| {r.get('router_cpu_us', {}).get(n, '-')} | {pt or '-'} | {ro or '-'} | {ratio} "
              f"| {sp or '-'} | {spread} | {output} | {f'{ro / op:.0%}' if op and ro else '-'} |")
    print()
    ro, op = r["router_eps"], r.get("output_eps", {})
    if 1000 in ro and 100_000 in ro:
        print(f"router at 100,000 / at 1,000: {ro[100_000] / ro[1000]:.0%} (target 80 %)"
              + (f"; the passthrough at the router's output at 100,000 / the router at 1,000: "
                 f"{op[100_000] / ro[1000]:.0%} (the most any router could reach on this machine)"
                 if 100_000 in op else ""))
    for rate, lat in r.get("latency_by_rate", {}).items():
        print(f"latency at {rate}/s: p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    print(f"subscription change live in {r.get('sub_change_s')} s; {r['bytes_per_subscription']} bytes per subscription")
    d = r.get("delivery")
    if d:
        print(f"runner, 20 ms handler: concurrency 32 / concurrency 1 = {d['c32_per_s']} / {d['c1_per_s']} "
              f"triggers/s = {d['ratio']}x; per-key order violations: {d['order_violations']}")


if __name__ == "__main__":
    main()
