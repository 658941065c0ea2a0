"""`make bench QUICK=1` keeps working: the smoke run on the test broker writes every key readers rely on.
Figures are not judged here; a benchmark is not a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.harness import REPO

KEYS = {"passthrough_eps", "router_eps", "naive_eps", "match_only_eps", "latency_ms", "sub_change_s",
        "bytes_per_subscription", "machine", "started_at"}


def test_quick_bench_writes_its_report(kafka_bootstrap, tmp_path):
    out = tmp_path / "latest.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)], cwd=REPO,
                          env={**os.environ, "EVBUS_BENCH_BOOTSTRAP": kafka_bootstrap}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert KEYS <= set(report)
    assert set(report["latency_ms"]) >= {"p50", "p99", "rate"}
    assert report["latency_by_rate"]["2000"]["samples"] > 0
    assert report["router_eps"]["1000"] > 0 and report["passthrough_eps"]["1000"] > 0
    assert report["spread_eps"]["1000"] > 0  # the passthrough over the trigger topics, same run
    # ... and writing as many records per event as the router's matches (the ceiling of its output)
    assert report["output_eps"]["1000"] > 0
    assert report["output_copies"]["1000"] == pytest.approx(report["match_detail"]["1000"]["matches_per_event"], abs=1e-4)
    assert len(report["router_detail"]["1000"]["router"]) == 1  # every run beside the medians (one in --quick)
    # what each run counted, with its commits' mean time by phase
    assert set(report["run_detail"]["1000"]["passthrough"][0]["commit_ms"]) == {"produce", "offsets", "commit"}
    assert report["router_cpu_us"]["1000"] > 0 and report["router_cpu_us"]["10000"] > 0
    assert report["router_cpu_route_py_us"]["1000"] > 0  # the baseline of the C common case, same run
    assert report["match_only_python_walk_eps"]["1000"] > 0  # the baseline of the C plan walk, same run
    assert "| subscriptions |" in done.stdout
    assert report["delivery"]["order_violations"] == 0  # per-key order held at concurrency 32
    assert report["delivery"]["c1_per_s"] > 0 and report["delivery"]["c32_per_s"] > 0


def test_workflow_count_bench_runs(kafka_bootstrap):
    """`python -m benchmarks.workflows` keeps working: one small run on the test broker."""
    from benchmarks import workflows
    out = workflows.bench(kafka_bootstrap, [3], n_subs=300, n_events=24_000, repeats=1)
    assert out[3]["eps"] > 0 and out[3]["commits"][0] >= 1


def test_transaction_bench_runs_every_client(kafka_bootstrap):
    """`python -m benchmarks.transactions --client python java aiokafka` keeps working: the same small
    transaction through librdkafka, the Java client (compiled against the local broker's client jar) and
    aiokafka."""
    from benchmarks import transactions
    for client in ("python", "java", "aiokafka"):
        rate, ms = transactions.run(kafka_bootstrap, 3, 50, rounds=3, client=client)
        assert rate > 0 and set(ms) == set(transactions.STEPS), client


def test_ab_runs_two_checkouts(kafka_bootstrap):
    """`python -m benchmarks.ab A B` keeps working: one round of this checkout against itself."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.ab", str(REPO), str(REPO), "--bootstrap", kafka_bootstrap,
                           "--subscriptions", "200", "--events", "8000", "--rounds", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["a_eps"]) == len(report["b_eps"]) == 1 and report["a_eps"][0] > 0 and report["b_eps"][0] > 0


@pytest.mark.timeout(600)
def test_batching_what_if_runs_both_clients(kafka_bootstrap, tmp_path):
    """`python -m benchmarks.batching` keeps working: a short throughput run and a short latency phase with the
    router's transactions through librdkafka, then through aiokafka, each in its own router process (which
    reports the checkpoint it ran: the run fails when the swap did not happen, or a router died)."""
    out = tmp_path / "batching.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.batching", "--subscriptions", "1000", "--rates", "300",
                           "--seconds", "3", "--warm", "60", "--events", "8000", "--out", str(out)], cwd=REPO,
                          env={**os.environ, "EVBUS_BOOTSTRAP": kafka_bootstrap}, capture_output=True, text=True,
                          timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    for client in ("librdkafka", "aiokafka"):
        assert report["latency_ms"][client][0]["300"]["samples"] > 0, client
        assert report["throughput_eps"][client][0] > 0, client
