"""The CLI's edges on the real broker: clear errors that name the problem (and nothing written), --json,
sub show/rm, and `evbus kafka up|down|status` on a broker of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from router import SubscriptionStore
from router.kafka import local
from tests.harness import REPO
from tests.kafka.test_seed_e2e import evbus


@pytest.mark.parametrize("args,fragment", [
    (["--on", "user..created"], "pattern at column 6"),
    (["--on", "user.*", "--where", 'event.department =='], "filter at column 20: Syntax error"),
    (["--on", "user.*", "--where", 'department == "x"'], "undeclared reference to 'department'"),
    (["--on", "user.*", "--where", "event.count + 1"], "not bool"),
    (["--on", "user.*", "--where", 'meta.tpye == "x"'], "undeclared reference to 'meta.tpye'"),
])
def test_bad_subscriptions_are_refused_and_nothing_is_written(bus, args, fragment):
    done = evbus(bus, "sub", "add", "bad", "--tenant", "acme", "--workflow", "w", *args, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and fragment in done.stderr, done.stderr
    assert SubscriptionStore(bus).list() == []


def test_sub_show_rm_and_json(bus):
    evbus(bus, "sub", "add", "s1", "--tenant", "acme", "--workflow", "w", "--on", "a.b", "--on", "c.*",
          "--where", "event.x > 1")
    shown = json.loads(evbus(bus, "sub", "show", "s1", "--tenant", "acme", "--json").stdout)
    assert shown["patterns"] == ["a.b", "c.*"] and shown["filter"] == "event.x > 1" and shown["enabled"]
    assert shown["matching"]["kind"] == "scan" and shown["matching"]["engine"] == "index"  # how it is matched
    added = evbus(bus, "sub", "add", "s2", "--tenant", "acme", "--workflow", "w", "--on", "a.b",
                  "--where", 'event.dept == "HR" && event.n + 1 > 2').stdout
    assert 'matching: a candidate only when event.dept == "HR"; then evaluated by the CEL engine' in added, added
    evbus(bus, "sub", "rm", "s2", "--tenant", "acme")
    assert evbus(bus, "sub", "show", "s1", "--tenant", "globex", check=False).returncode == 1
    evbus(bus, "sub", "rm", "s1", "--tenant", "acme")
    assert json.loads(evbus(bus, "sub", "list", "--json").stdout) == []
    assert "no subscription acme/s1" in evbus(bus, "sub", "rm", "s1", "--tenant", "acme", check=False).stderr


@pytest.mark.parametrize("args,fragment", [
    (["User.Created", "--tenant", "acme"], "lowercase dot-separated"),
    (["user.created", "--tenant", ""], "tenant is missing"),
    (["user.created", "--tenant", "acme", "--data", "{oops"], "--data is not JSON"),
    (["user.created", "--tenant", "acme", "--data", "@/nonexistent.json"], "no such file"),
])
def test_publish_refuses_bad_input(bus, args, fragment):
    done = evbus(bus, "publish", *args, check=False)
    assert done.returncode == 2 and fragment in done.stderr


def test_publish_from_a_file_prints_the_event_id(bus, tmp_path):
    payload = tmp_path / "user.json"
    payload.write_text('{"name": "Alice"}')
    out = evbus(bus, "publish", "user.created", "--tenant", "acme", "--data", f"@{payload}").stdout.strip()
    assert len(out) == 36 and out.count("-") == 4


def test_kafka_up_status_down(tmp_path):
    env = {**os.environ, "EVBUS_HOME": str(local.default_home())}
    run = lambda *a: subprocess.run([sys.executable, "-m", "router.cli", "kafka", *a, "--port", "19292"], env=env,
                                    cwd=REPO, capture_output=True, text=True, timeout=180)
    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == "127.0.0.1:19292"
        status = run("status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
        assert run("up").stdout.strip() == "127.0.0.1:19292"  # idempotent
    finally:
        down = run("down", "--wipe")
    assert down.returncode == 0
    status = run("status")
    assert status.returncode == 3 and status.stdout.startswith("stopped")


def test_a_cluster_id_that_starts_with_a_dash_formats(tmp_path):
    # A random id is urlsafe base64, so 1 in 64 starts with "-"; the storage tool once took it for an option.
    (tmp_path / "libs").symlink_to(local.fetch(local.LocalCluster(home=local.default_home())))
    cluster = local.LocalCluster(home=tmp_path, port=19293)
    (tmp_path / "cluster-19293").mkdir()
    (tmp_path / "cluster-19293" / "cluster.id").write_text("-MuXcTfKSFyd9oTzOrinkw")
    local._format(cluster)
    meta = next(cluster.node_dir(1).rglob("meta.properties")).read_text()
    assert "cluster.id=-MuXcTfKSFyd9oTzOrinkw" in meta
