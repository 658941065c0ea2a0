"""Settings, frozen. The bootstrap address comes from one place: EVBUS_BOOTSTRAP.

Client invariants that the bus's promises rest on (idempotence, acks=all, read_committed, manual
commits) are forced in `kafka/clients.py`; an override in `extra` that contradicts them is refused.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
EVENTS_PREFIX = "events."
TRIGGERS_PREFIX = "triggers."


def default_bootstrap() -> str:
    return os.environ.get("EVBUS_BOOTSTRAP", DEFAULT_BOOTSTRAP)


class Settings(BaseModel):
    """Everything a bus process needs to know about its cluster and its limits."""

    model_config = ConfigDict(frozen=True)

    bootstrap: str = Field(default_factory=default_bootstrap)
    # Prefixed to every topic and group name: several buses (staging, a test run) share one cluster.
    namespace: str = Field(default_factory=lambda: os.environ.get("EVBUS_NAMESPACE", ""),
                           pattern=r"^([a-z0-9][a-z0-9_-]*\.)?$")
    max_event_bytes: int = 1024 * 1024
    # Loop protection: an event this many workflow hops from its origin is not routed (lineage.py).
    hop_limit: int = Field(default=16, ge=1)
    # How far back events can be replayed: event topics must keep records at least this long (kafka/guards.py).
    replay_window_s: int = Field(default=7 * 86400, ge=0)
    # Partitions and replication for topics the bus creates itself.
    topic_partitions: int = 4
    # Trigger topics: one per workflow. Each partition a transaction touches costs the router about one
    # produce request at commit time, so latency grows with workflows × partitions: 4 partitions instead of 1
    # took p50 at 500 events/s from ~40 to 100-160 ms (docs/benchmarks.md). One runner process per workflow
    # then consumes it (with its own concurrency); more partitions let more runner processes share one.
    trigger_partitions: int = 1
    replication_factor: int = 1
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        env: dict[str, Any] = {}
        if "EVBUS_REPLICATION" in os.environ:
            env["replication_factor"] = int(os.environ["EVBUS_REPLICATION"])
        if "EVBUS_PARTITIONS" in os.environ:
            env["topic_partitions"] = int(os.environ["EVBUS_PARTITIONS"])
        if "EVBUS_TRIGGER_PARTITIONS" in os.environ:
            env["trigger_partitions"] = int(os.environ["EVBUS_TRIGGER_PARTITIONS"])
        if "EVBUS_REPLAY_WINDOW_S" in os.environ:
            env["replay_window_s"] = int(os.environ["EVBUS_REPLAY_WINDOW_S"])
        if "EVBUS_HOP_LIMIT" in os.environ:
            env["hop_limit"] = int(os.environ["EVBUS_HOP_LIMIT"])
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env)

    @property
    def subscriptions_topic(self) -> str:
        return self.namespace + "evbus.subscriptions"

    @property
    def deadletter_topic(self) -> str:
        return self.namespace + "evbus.deadletters"

    @property
    def router_group(self) -> str:
        return self.namespace + "evbus.router"

    @property
    def events_regex(self) -> str:
        """What the router subscribes to: every events.<domain> topic of this namespace."""
        return "^" + re.escape(self.namespace + EVENTS_PREFIX) + "[a-z0-9][a-z0-9_-]*$"

    def events_topic(self, event_type: str) -> str:
        return self.namespace + EVENTS_PREFIX + event_type.split(".", 1)[0]

    def trigger_topic(self, workflow: str) -> str:
        return self.namespace + TRIGGERS_PREFIX + workflow

    def runner_group(self, workflow: str) -> str:
        return self.namespace + "evbus.runner." + workflow
