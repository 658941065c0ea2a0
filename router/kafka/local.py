"""A real Apache Kafka broker (KRaft) run as local JVM processes, for development, demos and tests.

Jars come from Maven Central into a git-ignored cache (`deploy/kafka/pom.xml`); each node is formatted once
and started with `java -cp 'libs/*' kafka.Kafka`. State lives under one directory (EVBUS_HOME, default
`.cache/kafka` in the checkout); `state.json` there records the bootstrap address and the node pids.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import BrokerUnavailable, ConfigError

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kafka"
READY_LINE = "Kafka Server started"


def default_home() -> Path:
    return Path(os.environ.get("EVBUS_HOME", REPO / ".cache" / "kafka"))


@dataclass(frozen=True)
class LocalCluster:
    """Where a local cluster lives and which ports it takes."""

    home: Path
    port: int = 19092
    nodes: int = 1

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def state_file(self) -> Path:
        return self.home / f"state-{self.port}.json"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.nodes))

    def node_dir(self, node_id: int) -> Path:
        return self.home / f"cluster-{self.port}" / f"node-{node_id}"

    def controller_port(self, node_id: int) -> int:
        return self.port + 1000 + node_id - 1


def fetch(cluster: LocalCluster) -> Path:
    """Resolve the broker jars once; later calls reuse the cache."""
    if cluster.libs.is_dir() and any(cluster.libs.glob("kafka_2.13-*.jar")):
        return cluster.libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise ConfigError("the local broker needs Java 17+ and Maven on PATH (mvn, java)")
    logger.info("fetching Apache Kafka jars from Maven Central into %s", cluster.libs)
    tmp = cluster.libs.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        ["mvn", "-B", "-q", "-f", str(DEPLOY / "pom.xml"), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
        check=True,
    )
    tmp.rename(cluster.libs)
    return cluster.libs


# Kafka's own defaults (bin/kafka-server-start.sh, kafka-run-class.sh): G1 with short pauses and a 1 GiB heap.
# EVBUS_KAFKA_JVM_OPTS replaces them (whitespace-separated).
JVM_OPTS = ("-Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
            "-XX:+ExplicitGCInvokesConcurrent")


def _java(cluster: LocalCluster, *args: str) -> list[str]:
    return ["java", *os.environ.get("EVBUS_KAFKA_JVM_OPTS", JVM_OPTS).split(),
            f"-Dlog4j2.configurationFile={DEPLOY / 'log4j2.properties'}",
            "-cp", f"{cluster.libs}/*", *args]


def _write_properties(cluster: LocalCluster, node_id: int) -> Path:
    voters = ",".join(f"{n}@127.0.0.1:{cluster.controller_port(n)}" for n in range(1, cluster.nodes + 1))
    replication = min(3, cluster.nodes)
    text = (DEPLOY / "server.properties.in").read_text().format(
        node_id=node_id, voters=voters, port=cluster.port + node_id - 1,
        controller_port=cluster.controller_port(node_id), data_dir=cluster.node_dir(node_id) / "data",
        replication=replication, min_isr=max(1, replication - 1),
    )
    path = cluster.node_dir(node_id) / "server.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _format(cluster: LocalCluster) -> None:
    id_file = cluster.home / f"cluster-{cluster.port}" / "cluster.id"
    if not id_file.exists():
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    cluster_id = id_file.read_text().strip()
    for node_id in range(1, cluster.nodes + 1):
        props = _write_properties(cluster, node_id)
        subprocess.run(_java(cluster, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                             # the "=" form: a random id may start with "-"
                             f"--cluster-id={cluster_id}", f"--config={props}"),
                       check=True, stdout=subprocess.DEVNULL)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def read_state(cluster: LocalCluster) -> dict | None:
    try:
        return json.loads(cluster.state_file.read_text())
    except (OSError, ValueError):
        return None


def status(cluster: LocalCluster) -> dict:
    state = read_state(cluster) or {}
    pids = state.get("pids", [])
    alive = [pid for pid in pids if _alive(pid)]
    up = bool(pids) and len(alive) == len(pids) and all(
        _port_open(cluster.port + i) for i in range(cluster.nodes))
    return {"running": up, "bootstrap": cluster.bootstrap, "pids": alive, "home": str(cluster.home)}


def up(cluster: LocalCluster, timeout: float = 120.0) -> str:
    """Start every node (idempotent) and wait until each logs that it is ready."""
    if status(cluster)["running"]:
        return cluster.bootstrap
    for node_id in range(1, cluster.nodes + 1):
        for port in (cluster.port + node_id - 1, cluster.controller_port(node_id)):
            if _port_open(port):
                raise ConfigError(f"port {port} is taken by another process; pick another with --port")
    fetch(cluster)
    _format(cluster)
    pids, logs = [], []
    for node_id in range(1, cluster.nodes + 1):
        pid, log = _spawn(cluster, node_id)
        pids.append(pid)
        logs.append(log)
    cluster.state_file.write_text(json.dumps({"bootstrap": cluster.bootstrap, "pids": pids}))
    _wait_ready(cluster, pids, logs, timeout)
    return cluster.bootstrap


def _spawn(cluster: LocalCluster, node_id: int, mode: str = "w") -> tuple[int, Path]:
    log = cluster.node_dir(node_id) / "broker.log"
    with open(log, mode) as out:
        proc = subprocess.Popen(_java(cluster, "kafka.Kafka", str(cluster.node_dir(node_id) / "server.properties")),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid, log


def node_pid(cluster: LocalCluster, node_id: int) -> int | None:
    pids = (read_state(cluster) or {}).get("pids", [])
    pid = pids[node_id - 1] if len(pids) >= node_id else None
    return pid if pid and _alive(pid) else None


def stop_node(cluster: LocalCluster, node_id: int, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
    """Send `sig` to one node (SIGKILL: a crash; SIGTERM: a clean shutdown) and wait until it is gone."""
    pid = node_pid(cluster, node_id)
    if pid is None:
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        _reap([pid])
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    _reap([pid])


def start_node(cluster: LocalCluster, node_id: int, timeout: float = 120.0) -> None:
    """Start one stopped node again and wait until it is ready."""
    if node_pid(cluster, node_id) is not None:
        return
    log = cluster.node_dir(node_id) / "broker.log"
    mark = log.stat().st_size if log.exists() else 0
    pid, _ = _spawn(cluster, node_id, "a")
    state = read_state(cluster) or {"bootstrap": cluster.bootstrap, "pids": [0] * cluster.nodes}
    state["pids"][node_id - 1] = pid
    cluster.state_file.write_text(json.dumps(state))
    deadline = time.monotonic() + timeout
    while READY_LINE not in log.read_text(errors="replace")[mark:]:
        if not _alive(pid):
            raise BrokerUnavailable(f"broker node {node_id} exited during restart; see {log}")
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"broker node {node_id} not ready {timeout:.0f}s after restart; see {log}")
        time.sleep(0.2)


def _wait_ready(cluster: LocalCluster, pids: list[int], logs: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(range(len(pids)))
    while pending:
        for i in list(pending):
            if READY_LINE in logs[i].read_text(errors="replace"):
                pending.discard(i)
            elif not _alive(pids[i]):
                down(cluster)
                raise BrokerUnavailable(f"broker node {i + 1} exited during start; see {logs[i]}:\n"
                                        + logs[i].read_text(errors="replace")[-2000:])
        if time.monotonic() > deadline:
            down(cluster)
            raise BrokerUnavailable(f"broker not ready after {timeout:.0f}s; see {logs[0]}")
        time.sleep(0.2)


def down(cluster: LocalCluster, timeout: float = 30.0) -> None:
    """SIGTERM every node, wait for a clean shutdown, SIGKILL what is left."""
    state = read_state(cluster) or {}
    pids = [pid for pid in state.get("pids", []) if _alive(pid)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        _reap(pids)
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            logger.warning("broker pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
    _reap(pids)
    cluster.state_file.unlink(missing_ok=True)


def _reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


@contextmanager
def fresh(cluster: LocalCluster) -> Iterator[str]:
    """The cluster up on wiped data for the block (its bootstrap address), then down and wiped again: what
    the benchmarks and the guard tests run on."""
    down(cluster)
    wipe(cluster)
    try:
        yield up(cluster)
    finally:
        down(cluster)
        wipe(cluster)


def wipe(cluster: LocalCluster) -> None:
    """Delete the cluster's data (not the jar cache)."""
    shutil.rmtree(cluster.home / f"cluster-{cluster.port}", ignore_errors=True)
