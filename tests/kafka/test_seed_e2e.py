"""The seed's three use cases end to end on the real broker, through the CLI and through the Python API:
a welcome email for every user.provisioned; finance app access only for department Finance; the critical
responder only for job.failed with severity critical. Router and runner are real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from router import Publisher, SubscriptionStore
from router.envelope import codec
from tests.harness import REPO, read_all, wait_until

SEED_SUBS = [
    ("welcome-new-users", "send-welcome-email", ["user.provisioned"], None),
    ("finance-app-access", "provision-finance-app", ["user.provisioned"], 'event.department == "Finance"'),
    ("critical-failures", "critical-responder", ["*.failed"], 'event.severity == "critical"'),
]
SEED_EVENTS = [
    ("user.provisioned", {"name": "Alice", "email": "a@acme.test", "department": "Finance"}),
    ("user.provisioned", {"name": "Bob", "email": "b@acme.test", "department": "Engineering"}),
    ("job.failed", {"job": "backup", "severity": "critical"}),
    ("job.failed", {"job": "export", "severity": "warning"}),
]


def evbus(bus, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "EVBUS_BOOTSTRAP": bus.bootstrap, "EVBUS_NAMESPACE": bus.namespace}
    done = subprocess.run([sys.executable, "-m", "router.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"evbus {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def fired(out_file) -> dict[str, set[str]]:
    by_event: dict[str, set[str]] = {}
    if out_file.exists():
        for line in out_file.read_text().splitlines():
            rec = json.loads(line)
            by_event.setdefault(rec["event_id"], set()).add(rec["workflow"])
    return by_event


def expect(ids):
    alice, bob, critical, warning = ids
    return {alice: {"send-welcome-email", "provision-finance-app"}, bob: {"send-welcome-email"},
            critical: {"critical-responder"}}


def test_seed_use_cases_through_the_cli(bus, spawn, start_router, tmp_path):
    for name, wf, patterns, where in SEED_SUBS:
        args = ["sub", "add", name, "--tenant", "acme", "--workflow", wf]
        for p in patterns:
            args += ["--on", p]
        if where:
            args += ["--where", where]
        evbus(bus, *args)
    listed = json.loads(evbus(bus, "sub", "list", "--tenant", "acme", "--json").stdout)
    assert sorted(s["name"] for s in listed) == sorted(s[0] for s in SEED_SUBS)

    out = tmp_path / "fired.jsonl"
    start_router()
    spawn("work", "examples/seed_workflows.py", "--metrics-port", "0", name="runner",
          env={"EVBUS_DEMO_OUT": str(out)}, ready="consuming")
    ids = [evbus(bus, "publish", t, "--tenant", "acme", "--data", json.dumps(d)).stdout.strip()
           for t, d in SEED_EVENTS]
    want = expect(ids)
    wait_until(lambda: sum(map(len, fired(out).values())) >= 4, 60, lambda: f"fired so far: {fired(out)}")
    time.sleep(1.5)  # a wrong extra trigger would arrive now
    assert fired(out) == want

    dry = json.loads(evbus(bus, "sub", "test", "--tenant", "acme", "--type", "user.provisioned", "--data",
                           '{"department": "Finance"}', "--json").stdout)
    assert {m["subscription"] for m in dry["matched"]} == {"acme/welcome-new-users", "acme/finance-app-access"}
    reasons = {m["subscription"]: m["reason"] for m in dry["not_matched"]}
    assert reasons == {"acme/critical-failures": "no pattern matches user.provisioned"}


def test_seed_use_cases_through_the_python_api(bus, start_router):
    store = SubscriptionStore(bus)
    for name, wf, patterns, where in SEED_SUBS:
        store.put(name=name, tenant="acme", workflow=wf, patterns=patterns, filter=where)
    start_router()
    with Publisher(bus) as pub:
        ids = [pub.publish(t, d, tenant="acme", key=d["name"] if "name" in d else d["job"]) for t, d in SEED_EVENTS]
    want = expect(ids)
    got: dict[str, set[str]] = {}
    for wf in {"send-welcome-email", "provision-finance-app", "critical-responder"}:
        for msg in read_all(bus, bus.trigger_topic(wf), expect=sum(wf in w for w in want.values())):
            trigger = codec.decode_trigger(msg.value())
            got.setdefault(trigger["event"].id, set()).add(wf)
            assert trigger["idempotency_key"] == f"{trigger['event'].id}:{trigger['subscription']}"
            assert msg.key() == trigger["event"].payload().get("name", trigger["event"].payload().get("job")).encode()
    assert got == want
