"""`evbus demo`: the seed's use cases, end to end, on a local broker this command starts and stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from pathlib import Path

import click

from ..client import Publisher
from ..config import Settings
from ..kafka import local
from ..subscriptions import SubscriptionStore

REPO = Path(__file__).resolve().parents[2]
TENANT = "acme"
SUBSCRIPTIONS = [
    dict(name="welcome-new-users", workflow="send-welcome-email", patterns=["user.provisioned"]),
    dict(name="finance-app-access", workflow="provision-finance-app", patterns=["user.provisioned"],
         filter='event.department == "Finance"'),
    dict(name="critical-failures", workflow="critical-responder", patterns=["*.failed"],
         filter='event.severity == "critical"'),
]
EVENTS = [  # (tenant, type, payload, workflows expected to fire)
    (TENANT, "user.provisioned", {"name": "Alice", "email": "alice@acme.test", "department": "Finance"},
     {"send-welcome-email", "provision-finance-app"}),
    (TENANT, "user.provisioned", {"name": "Bob", "email": "bob@acme.test", "department": "Engineering"},
     {"send-welcome-email"}),
    (TENANT, "job.failed", {"job": "nightly-backup", "severity": "critical", "error": "disk full"},
     {"critical-responder"}),
    (TENANT, "job.failed", {"job": "report-export", "severity": "warning"}, set()),
    ("globex", "user.provisioned", {"name": "Gina", "email": "gina@globex.test", "department": "Finance"}, set()),
]


def _spawn(stack: ExitStack, args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "router.cli", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=REPO)
    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        out.close()
    stack.callback(stop)
    return proc


def _wait_for(path: Path, count: int, procs: list[subprocess.Popen], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if len(lines) >= count:
            time.sleep(1.0)  # anything extra (a wrong trigger) would arrive now
            return [json.loads(x) for x in path.read_text().splitlines()]
        for p in procs:
            if p.poll() is not None:
                raise click.ClickException(f"{p.args[3]} exited with {p.returncode}; see the logs above")
        time.sleep(0.2)
    raise click.ClickException(f"only {len(lines)} of {count} triggers handled after {timeout:.0f}s")


@click.command()
@click.option("--port", default=19092, show_default=True, help="Broker port for the demo.")
@click.option("--keep-broker", is_flag=True, help="Leave the broker running afterwards.")
def demo(port: int, keep_broker: bool) -> None:
    """Start a broker, the router and the seed's workflows; publish the seed's events; show what fired."""
    cluster = local.LocalCluster(local.default_home(), port=port)
    with ExitStack() as stack:
        click.echo(f"• starting Kafka (KRaft) on {cluster.bootstrap} …")
        was_running = local.status(cluster)["running"]
        bootstrap = local.up(cluster)
        if not (keep_broker or was_running):
            stack.callback(local.down, cluster)
        work = Path(tempfile.mkdtemp(prefix="evbus-demo-"))
        out = work / "fired.jsonl"
        settings = Settings(bootstrap=bootstrap)
        env = {**os.environ, "EVBUS_BOOTSTRAP": bootstrap, "EVBUS_DEMO_OUT": str(out), "PYTHONUNBUFFERED": "1"}
        store = SubscriptionStore(settings)
        stack.callback(store.close)  # before the broker stops: no reconnect noise from a lingering client
        click.echo("• subscriptions (tenant acme):")
        for s in SUBSCRIPTIONS:
            sub = store.put(tenant=TENANT, **s)
            click.echo(f"    {sub.name:20} {sub.workflow:24} on {','.join(sub.patterns)}"
                       + (f"  where {sub.filter}" if sub.filter else ""))
        click.echo("• starting the router and the runner …")
        procs = [_spawn(stack, ["route", "--instance", f"demo-{port}", "--metrics-port", "0"], env, work / "router.log"),
                 _spawn(stack, ["work", "examples/seed_workflows.py", "--metrics-port", "0"], env, work / "runner.log")]
        ids = _publish(settings)
        expected = sum(len(e[3]) for e in EVENTS)
        try:
            fired = _wait_for(out, expected, procs, timeout=90)
        except click.ClickException:
            for name in ("router.log", "runner.log"):
                click.echo(f"--- {name}\n" + (work / name).read_text()[-3000:], err=True)
            raise
        ok = _report(ids, fired)
    click.echo(f"• stopped what the demo started (logs in {work})")
    if not ok:
        raise SystemExit(1)


def _publish(settings: Settings) -> list[str]:
    click.echo("• publishing the seed's events:")
    ids = []
    with closing(Publisher(settings, source="evbus/demo")) as pub:  # closed before the broker stops
        for tenant, type_, data, _ in EVENTS:
            ids.append(pub.publish(type_, data, tenant=tenant, key=data.get("name") or data.get("job")))
            click.echo(f"    {tenant:7} {type_:17} {json.dumps(data)}")
    return ids


def _report(ids: list[str], fired: list[dict]) -> bool:
    click.echo("• what fired:")
    ok = True
    for event_id, (tenant, type_, data, want) in zip(ids, EVENTS):
        runs = [f for f in fired if f["event_id"] == event_id]
        got = {f["workflow"] for f in runs}
        ok &= got == want
        who = data.get("name") or data.get("job")
        detail = ", ".join(f"{k}={v}" for k, v in data.items() if k in ("department", "severity"))
        click.echo(f"    {'✓' if got == want else '✗'} {tenant:7} {type_:17} {who:15} {detail:21}"
                   f" → {', '.join(sorted(got)) or 'nothing'}")
        for f in sorted(runs, key=lambda f: f["workflow"]):
            click.echo(f"        [{f['workflow']}] {f['action']}")
    click.echo("• all outcomes as the seed asks" if ok else "• UNEXPECTED outcome: see ✗ above")
    return ok
