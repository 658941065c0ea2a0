"""Start-up guards: the router and the runner refuse settings that would break their promises.

Client settings (auto-commit, read_uncommitted, acks other than all, idempotence off) are refused where
clients are made (`clients.py`). Here, the cluster: on a cluster of 3 or more brokers, the bus's topics
need replication factor 3 and min.insync.replicas 2 (one broker lost loses nothing, two lost stop writes
instead of losing them); topics the bus creates get `Settings.replication_factor`, so that must be 3 too.
Event topics must keep records at least as long as the replay window (`Settings.replay_window_s`).
A single-node cluster (development) passes the replication checks with a warning.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from ..config import EVENTS_PREFIX, TRIGGERS_PREFIX, Settings
from ..errors import BrokerUnavailable, ConfigError

logger = logging.getLogger(__name__)
MIN_REPLICAS, MIN_ISR = 3, 2


def check(settings: Settings, role: str, timeout: float = 30.0) -> None:
    """Raise ConfigError naming every setting that breaks a promise, and why; `role` names the process."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(f"no broker answered at {settings.bootstrap}: {exc}") from None
    brokers = len(meta.brokers)
    ns = settings.namespace
    bus_topics = {name: t for name, t in meta.topics.items() if name.startswith(ns) and (
        name.startswith(ns + EVENTS_PREFIX) or name.startswith(ns + TRIGGERS_PREFIX) or name.startswith(ns + "evbus."))}
    problems: list[str] = []
    multi = brokers >= MIN_REPLICAS
    if multi and settings.replication_factor < MIN_REPLICAS:
        problems.append(f"replication factor {settings.replication_factor} for the topics the bus creates, on a "
                        f"{brokers}-broker cluster: set EVBUS_REPLICATION={MIN_REPLICAS} (with fewer copies, one "
                        "lost broker loses acknowledged events)")
    if not multi:
        logger.warning("%d-broker cluster: replication checks skipped (fine for development, not for production)",
                       brokers)
    configs = _configs(admin, list(bus_topics), timeout) if bus_topics else {}
    for name, topic in sorted(bus_topics.items()):
        replicas = min((len(p.replicas) for p in topic.partitions.values()), default=0)
        conf = configs.get(name, {})
        if multi and replicas < MIN_REPLICAS:
            problems.append(f"{name} has {replicas} replica(s) on a {brokers}-broker cluster; it needs "
                            f"{MIN_REPLICAS} (recreate it, or reassign its partitions)")
        isr = int(conf.get("min.insync.replicas", "1"))
        if multi and isr < MIN_ISR:
            problems.append(f"{name} has min.insync.replicas={isr}; it needs {MIN_ISR}, or acks=all is "
                            "acknowledged by a single broker")
        retention = int(conf.get("retention.ms", "-1"))
        if name.startswith(ns + EVENTS_PREFIX) and 0 <= retention < settings.replay_window_s * 1000:
            problems.append(f"{name} keeps records {retention / 3_600_000:g} h (retention.ms={retention}); the "
                            f"replay window is {settings.replay_window_s / 3600:g} h (EVBUS_REPLAY_WINDOW_S): "
                            "events would be gone before they can be replayed")
    if problems:
        raise ConfigError(f"the {role} refuses to start: " + "; ".join(problems))


def _configs(admin: AdminClient, names: list[str], timeout: float) -> dict[str, dict[str, str]]:
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=timeout)
    out = {}
    for resource, future in futures.items():
        try:
            out[resource.name] = {k: v.value for k, v in future.result(timeout=timeout).items()}
        except KafkaException as exc:
            raise ConfigError(f"cannot read the configuration of {resource.name}: {exc}") from None
    return out
