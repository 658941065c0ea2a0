"""The runner: at least once per trigger with a stable idempotency key; SIGTERM drains and commits;
a failing handler's trigger goes to triggers.<workflow>.dlq; metrics are served."""

from __future__ import annotations

import json
import signal
import urllib.request

from router import Publisher, SubscriptionStore
from tests.harness import header, read_all, wait_until


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_sigterm_drains_then_restart_handles_the_rest(bus, spawn, start_router, tmp_path):
    out = tmp_path / "handled.jsonl"
    env = {"RECORD_WORKFLOWS": "slow", "RECORD_OUT": str(out), "RECORD_SLEEP": "0.05"}
    SubscriptionStore(bus).put(name="slow", tenant="acme", workflow="slow", patterns=["work.item"])
    start_router()
    with Publisher(bus) as pub:
        ids = [pub.publish("work.item", {"n": n}, tenant="acme", key=str(n % 4)) for n in range(200)]
    runner = spawn("work", "tests/apps/recorder.py", "--metrics-port", "0", name="runner-1", env=env)
    wait_until(lambda: len(lines(out)) >= 20, 60, "the runner to handle 20 triggers")
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(30) == 0, runner.output()[-2000:]
    assert "runner stopped cleanly" in runner.output()
    handled_before = len(lines(out))
    assert handled_before < 200
    spawn("work", "tests/apps/recorder.py", "--metrics-port", "0", name="runner-2", env=env)
    wait_until(lambda: {r["event_id"] for r in lines(out)} >= set(ids), 90, "every trigger handled")
    records = lines(out)
    assert all(r["key"] == f"{r['event_id']}:slow" for r in records)
    # at least once; SIGTERM finished the handler in flight and committed what was handled: no repeats
    assert len(records) == len(ids)


def test_failing_handler_is_dead_lettered_with_the_error(bus, spawn, start_router, tmp_path):
    SubscriptionStore(bus).put(name="boom", tenant="acme", workflow="boom", patterns=["boom.now"])
    start_router()
    spawn("work", "tests/apps/failing.py", "--metrics-port", "19477", name="runner", ready="consuming")
    with Publisher(bus) as pub:
        event_id = pub.publish("boom.now", {"x": 1}, tenant="acme")
    dead = read_all(bus, bus.trigger_topic("boom") + ".dlq", expect=1, timeout=60)
    assert len(dead) == 1
    assert header(dead[0], "evbus-dlq-error-type") == "RuntimeError"
    assert header(dead[0], "evbus-dlq-error") == "always fails"
    assert header(dead[0], "evbus-dlq-attempts") == "5"  # the subscription's default max_attempts
    assert header(dead[0], "evbus-idempotency-key") == f"{event_id}:boom"
    metrics = urllib.request.urlopen("http://127.0.0.1:19477/metrics", timeout=5).read().decode()
    assert 'evbus_runner_triggers_handled_total{outcome="dead-lettered",workflow="boom"} 1.0' in metrics
