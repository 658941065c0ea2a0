"""Configuration guards: client settings that break a promise are refused where clients are made; on a
3-node cluster the router and the runner refuse under-replicated topics, min.insync.replicas 1, a
replication factor below 3 for new topics, and event retention shorter than the replay window."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from router.config import Settings
from router.errors import ConfigError
from router.kafka import clients, guards, local
from tests.harness import REPO, wait_until


@pytest.mark.parametrize("kind, setting, value", [
    ("consumer", "enable.auto.commit", True), ("consumer", "isolation.level", "read_uncommitted"),
    ("producer", "acks", "1"), ("producer", "enable.idempotence", False)])
def test_client_settings_that_break_promises_are_refused(kind, setting, value):
    settings = Settings(bootstrap="127.0.0.1:1", extra={kind: {setting: value}})
    make = clients.consumer_config if kind == "consumer" else clients.producer_config
    with pytest.raises(ConfigError, match=f"{setting}=.* is refused: the bus needs"):
        make(settings, "g") if kind == "consumer" else make(settings)


@pytest.fixture(scope="module")
def three_nodes():
    cluster = local.LocalCluster(local.default_home(), port=int(os.environ.get("EVBUS_GUARD_PORT", "19950")), nodes=3)
    with local.fresh(cluster) as bootstrap:
        yield bootstrap


def _topic(bootstrap, name, replicas, **config):
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, 1, replicas, config=config)])[name].result(30)
    wait_until(lambda: name in admin.list_topics(timeout=10).topics, 30, f"{name} in the metadata")


@pytest.mark.kafka
def test_three_node_cluster_refuses_what_would_lose_events(three_nodes):
    ns = f"g{uuid.uuid4().hex[:6]}."
    ok = Settings(bootstrap=three_nodes, namespace=ns, replication_factor=3)
    guards.check(ok, "router")  # nothing there yet: fine
    with pytest.raises(ConfigError, match="replication factor 1 for the topics the bus creates.*EVBUS_REPLICATION=3"):
        guards.check(Settings(bootstrap=three_nodes, namespace=ns), "router")
    _topic(three_nodes, ns + "events.thin", 1)
    _topic(three_nodes, ns + "triggers.loose", 3, **{"min.insync.replicas": "1"})
    _topic(three_nodes, ns + "events.short", 3, **{"retention.ms": "3600000"})

    def refusal() -> str:
        try:
            guards.check(ok, "runner")
        except ConfigError as err:
            return str(err)
        return ""
    # each broker learns of a new topic, and of its configuration, on its own time, and the guard asks
    # whichever answers: wait for one refusal that sees all three (CI once saw two, then two again after
    # a refusal that had seen the third)
    seen = [""]

    def all_three() -> bool:
        seen[0] = refusal()
        return all(f"{ns}{name}" in seen[0] for name in ("events.thin", "triggers.loose", "events.short"))
    wait_until(all_three, 30, lambda: f"a refusal naming all three topics; the last: {seen[0]}")
    text = seen[0]
    assert text.startswith("the runner refuses to start")
    assert f"{ns}events.thin has 1 replica(s) on a 3-broker cluster" in text
    assert f"{ns}triggers.loose has min.insync.replicas=1" in text
    assert f"{ns}events.short keeps records 1 h" in text and "replay window is 168 h" in text
    guards.check(Settings(bootstrap=three_nodes, namespace="x" + ns, replication_factor=3), "router")  # not ours

    proc = subprocess.run([sys.executable, "-m", "router.cli", "route", "--metrics-port", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EVBUS_BOOTSTRAP": three_nodes, "EVBUS_NAMESPACE": ns,
                               "EVBUS_REPLICATION": "3"})
    assert proc.returncode == 1 and "error: the router refuses to start" in proc.stderr, proc.stderr[-2000:]
