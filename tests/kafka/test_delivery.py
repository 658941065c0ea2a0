"""Workflow delivery against the real broker, with real router and runner processes:
retries that hold only their key, dead letters with context and redrive, SIGKILL with 100 in flight,
loops stopped by lineage, pause/resume, async handlers."""

from __future__ import annotations

import json
import time

import pytest

from router import Publisher, SubscriptionStore
from router.delivery import deadletters
from tests.harness import header, read_all, wait_until
from tests.kafka.test_seed_e2e import evbus

APP = "tests/apps/delivery.py"


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def runner(spawn, out, *extra, name="runner", env=None):
    return spawn("work", APP, *extra, "--metrics-port", "0", name=name,
                 env={"DELIVERY_OUT": str(out), **(env or {})}, ready="consuming")


def test_fails_twice_then_succeeds_in_order_without_delaying_other_keys(bus, spawn, start_router, tmp_path):
    out = tmp_path / "calls.jsonl"
    SubscriptionStore(bus).put(name="flaky", tenant="acme", workflow="flaky", patterns=["job.*"])
    start_router()
    runner(spawn, out, "--workflow", "flaky")
    with Publisher(bus) as pub:
        pub.publish("job.run", {"n": 0, "key": "A", "fail": 2}, tenant="acme", key="A")
        for n in range(1, 4):
            pub.publish("job.run", {"n": n, "key": "A"}, tenant="acme", key="A")
        for n in range(4, 24):
            pub.publish("job.run", {"n": n, "key": f"B{n}"}, tenant="acme", key=f"B{n}")
    wait_until(lambda: len([r for r in lines(out) if r["phase"] == "ok"]) >= 24, 60, "24 successes")
    calls = lines(out)
    ok = [r for r in calls if r["phase"] == "ok"]
    assert sorted(r["n"] for r in ok) == list(range(24))  # exactly one success each
    assert [r["attempt"] for r in calls if r["n"] == 0 and r["phase"] in ("fail", "ok")] == [1, 2, 3]
    assert [r["n"] for r in ok if r["key"] == "A"] == [0, 1, 2, 3]  # key A in order, behind its retries
    first_a = next(r["t"] for r in ok if r["n"] == 0)
    others_done = max(r["t"] for r in ok if r["key"] != "A")
    assert others_done < first_a, "other keys waited for key A's retries"
    assert len({r["ikey"] for r in calls if r["n"] == 0}) == 1  # every attempt: the same idempotency key


def test_always_failing_trigger_is_dead_lettered_with_context_then_redriven_once(bus, spawn, start_router,
                                                                                 tmp_path):
    out, flag = tmp_path / "calls.jsonl", tmp_path / "broken"
    flag.touch()
    SubscriptionStore(bus).put(name="sync-crm", tenant="acme", workflow="always", patterns=["crm.*"],
                               max_attempts=3)
    start_router()
    proc = runner(spawn, out, "--workflow", "always", env={"DELIVERY_FAIL_FLAG": str(flag)})
    with Publisher(bus) as pub:
        event_id = pub.publish("crm.updated", {"n": 1, "key": "x"}, tenant="acme", key="x")
    dead = read_all(bus, bus.trigger_topic("always") + ".dlq", expect=1, timeout=60)
    assert len(dead) == 1
    h = {name: header(dead[0], f"evbus-dlq-{name}") for name in (
        "reason", "subscription", "workflow", "error-type", "error", "attempts", "first-failure", "last-failure",
        "topic", "partition", "offset")}
    assert h["reason"] == "attempts-exhausted" and h["attempts"] == "3"
    assert (h["subscription"], h["workflow"], h["error-type"]) == ("sync-crm", "always", "ValueError")
    assert h["error"] == "the downstream API rejected the record"
    assert h["first-failure"] < h["last-failure"]
    assert h["topic"] == bus.trigger_topic("always") and int(h["offset"]) >= 0
    assert header(dead[0], "evbus-idempotency-key") == f"{event_id}:sync-crm"
    assert len([r for r in lines(out) if r["phase"] == "start"]) == 3

    listed = evbus(bus, "dlq", "list", "--workflow", "always", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["subscription"], r["attempts"], r["error_type"], r["redriven"]) for r in rows] == [
        ("sync-crm", 3, "ValueError", False)]
    shown = json.loads(evbus(bus, "dlq", "show", "--workflow", "always", rows[0]["id"], "--json").stdout)
    assert shown["event"]["id"] == event_id and shown["event"]["data"] == {"n": 1, "key": "x"}
    refused = evbus(bus, "dlq", "redrive", "--workflow", "always", check=False)
    assert refused.returncode == 2 and "--all" in refused.stderr

    flag.unlink()  # the fix
    before = len(lines(out))
    redriven = evbus(bus, "dlq", "redrive", "--workflow", "always", "--subscription", "sync-crm")
    assert redriven.returncode == 0 and "redrove 1 dead letters" in redriven.stdout, redriven.stderr
    wait_until(lambda: any(r["phase"] == "ok" for r in lines(out)), 60, "the redriven trigger handled")
    again = evbus(bus, "dlq", "redrive", "--workflow", "always", "--all")
    assert "nothing to redrive" in again.stdout  # redriven once, marked
    wait_until(lambda: proc.alive() and len(lines(out)) >= before + 2, 10, "the call after redrive")
    after = lines(out)[before:]
    assert [r["phase"] for r in after] == ["start", "ok"]  # delivered once
    assert after[1]["ikey"] == f"{event_id}:sync-crm"  # same idempotency key
    assert json.loads(evbus(bus, "dlq", "list", "--workflow", "always", "--all", "--json").stdout)[0]["redriven"]


def test_sigkill_with_100_in_flight_redelivers_only_what_was_unfinished(bus, spawn, start_router, tmp_path):
    out = tmp_path / "calls.jsonl"
    SubscriptionStore(bus).put(name="slow", tenant="acme", workflow="slow", patterns=["batch.*"])
    start_router()
    first = runner(spawn, out, "--workflow", "slow", "--concurrency", "128", name="runner-1")
    with Publisher(bus) as pub:  # 100 calls that hang, 200 quick ones around them, each its own key
        for n in range(300):
            pub.publish("batch.item", {"n": n, "key": f"k{n}", "sleep": 600 if n % 3 == 0 else 0}, tenant="acme",
                        key=f"k{n}")
    wait_until(lambda: len([r for r in lines(out) if r["phase"] == "ok"]) == 200
               and len([r for r in lines(out) if r["phase"] == "start"]) == 300, 90, "200 done and 100 in flight")
    time.sleep(2)  # a commit (every 0.5 s) records the 200 finished ones above the 100 unfinished
    first.kill()
    run1 = lines(out)
    unfinished = {r["n"] for r in run1 if r["phase"] == "start"} - {r["n"] for r in run1 if r["phase"] == "ok"}
    assert len(unfinished) == 100
    out2 = tmp_path / "calls2.jsonl"
    # the restarted runner: same workflow, the hanging calls now return at once
    runner(spawn, out2, "--workflow", "slow", "--concurrency", "128", name="runner-2",
           env={"DELIVERY_NO_SLEEP": "1"})
    wait_until(lambda: len([r for r in lines(out2) if r["phase"] == "ok"]) >= 100, 90, "the 100 redelivered")
    time.sleep(2)
    run2 = lines(out2)
    redelivered = [r["n"] for r in run2 if r["phase"] == "ok"]
    assert sorted(redelivered) == sorted(unfinished)  # every trigger handled; duplicates only the 100
    ikeys1 = {r["n"]: r["ikey"] for r in run1}
    assert all(r["ikey"] == ikeys1[r["n"]] for r in run2)  # a duplicate carries the same idempotency key


def test_a_loop_between_two_workflows_stops_with_reason_loop(bus, spawn, start_router, tmp_path):
    out = tmp_path / "calls.jsonl"
    store = SubscriptionStore(bus)
    # tenant "cyc": no recursion declared, so the first repeat of a subscription in the chain is a cycle
    store.put(name="on-a", tenant="cyc", workflow="ping", patterns=["loop.a"])
    store.put(name="on-b", tenant="cyc", workflow="pong", patterns=["loop.b"])
    # tenant "rec": recursion declared, so only the hop limit (16) stops it
    store.put(name="on-a", tenant="rec", workflow="ping", patterns=["loop.a"], recursion=100)
    store.put(name="on-b", tenant="rec", workflow="pong", patterns=["loop.b"], recursion=100)
    store.put(name="bystander", tenant="rec", workflow="flaky", patterns=["other.*"])
    start_router()
    runner(spawn, out, "--workflow", "ping", "--workflow", "pong", "--workflow", "flaky")
    with Publisher(bus) as pub:
        pub.publish("loop.a", {"n": 0, "key": "cyc", "next": "loop.b"}, tenant="cyc")
        pub.publish("loop.a", {"n": 0, "key": "rec", "next": "loop.b"}, tenant="rec")
        for n in range(30):
            pub.publish("other.thing", {"n": n, "key": f"o{n}"}, tenant="rec")
    dead = read_all(bus, bus.deadletter_topic, expect=2, timeout=90)
    loops = {header(m, "evbus-tenant"): header(m, "evbus-dlq-detail") for m in dead
             if header(m, "evbus-dlq-reason") == "loop"}
    assert set(loops) == {"cyc", "rec"}, dead
    assert loops["cyc"].startswith("cycle: cyc/on-a (recursion 0)")
    assert loops["rec"].startswith("hop limit 16 reached (hops 16")
    calls = [r for r in lines(out) if r["phase"] == "ok"]
    assert [(r["wf"], r["hops"]) for r in calls if r["key"] == "cyc"] == [("ping", 0), ("pong", 1)]
    rec = [(r["wf"], r["hops"]) for r in calls if r["key"] == "rec"]
    assert rec == [("ping" if h % 2 == 0 else "pong", h) for h in range(16)]
    assert sorted(r["n"] for r in calls if r["wf"] == "flaky") == list(range(30))  # nothing else affected


def test_paused_subscription_keeps_triggers_until_resumed(bus, spawn, start_router, tmp_path):
    out = tmp_path / "calls.jsonl"
    store = SubscriptionStore(bus)
    store.put(name="held", tenant="acme", workflow="flaky", patterns=["hold.*"], paused=True)
    store.put(name="free", tenant="acme", workflow="flaky", patterns=["free.*"])
    start_router()
    runner(spawn, out, "--workflow", "flaky")
    with Publisher(bus) as pub:
        for n in range(5):
            pub.publish("hold.item", {"n": n, "key": "h"}, tenant="acme", key="h")
        pub.publish("free.item", {"n": 99, "key": "f"}, tenant="acme", key="f")
    wait_until(lambda: any(r["n"] == 99 for r in lines(out)), 60, "the free subscription's trigger")
    time.sleep(2)
    assert not [r for r in lines(out) if r["key"] == "h"]  # held, not handled
    resumed = evbus(bus, "sub", "resume", "held", "--tenant", "acme")
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: len([r for r in lines(out) if r["key"] == "h" and r["phase"] == "ok"]) == 5, 30,
               "the held triggers after resume")
    assert [r["n"] for r in lines(out) if r["key"] == "h" and r["phase"] == "ok"] == [0, 1, 2, 3, 4]


def test_async_handler_retries_and_reports(bus, spawn, start_router, tmp_path):
    out = tmp_path / "calls.jsonl"
    SubscriptionStore(bus).put(name="aping", tenant="acme", workflow="aping", patterns=["async.*"])
    start_router()
    runner(spawn, out, "--workflow", "aping")
    with Publisher(bus) as pub:
        for n in range(10):
            pub.publish("async.job", {"n": n, "key": f"k{n % 2}", "sleep": 0.05, "fail": 1 if n == 3 else 0},
                        tenant="acme", key=f"k{n % 2}")
    wait_until(lambda: len([r for r in lines(out) if r["phase"] == "ok"]) == 10, 60, "10 async successes")
    ok = [r["n"] for r in lines(out) if r["phase"] == "ok"]
    assert [n for n in ok if n % 2 == 1] == [1, 3, 5, 7, 9]
    assert [n for n in ok if n % 2 == 0] == [0, 2, 4, 6, 8]


def test_dead_letter_reader_on_unknown_workflow_says_so(bus):
    from router.errors import KafkaError
    with pytest.raises(KafkaError, match="no dead letters were ever written"):
        deadletters.read(bus, "never-ran")
