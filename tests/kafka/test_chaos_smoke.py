"""`make chaos QUICK=1` in the suite: a 3-node cluster (its own, started and stopped by the run), about
20,000 events, one fault of each kind; the verifier must find no violation and the lag back to zero.
The figures (latency, recovery) are reported, not judged: a chaos run is not a benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chaos.run import FAULTS
from tests.harness import REPO


@pytest.mark.kafka
@pytest.mark.timeout(1300)
def test_quick_chaos_run_finds_no_violation(tmp_path):
    out = tmp_path / "latest.json"
    proc = subprocess.Popen([sys.executable, "-m", "chaos.run", "--quick", "--seed", "7", "--out", str(out)],
                            cwd=REPO, env={**os.environ, "EVBUS_CHAOS_PORT": os.environ.get("EVBUS_CHAOS_PORT", "19900")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the run stops its processes and its cluster on SIGTERM
        stdout, stderr = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.exists(), done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert set(report) >= {"events", "faults", "aborted_transactions", "fenced_producers", "violations",
                           "recovery_s", "latency_ms"}
    assert report["violations"] == {"missing": 0, "duplicates": 0, "order": 0, "unexpected": 0, "unhandled": 0}
    assert report["lag_after"] == 0
    assert set(report["faults"]) == set(FAULTS)
    assert report["events"]["acknowledged"] >= 20_000
    assert done.returncode == 0, done.stdout[-4000:]
