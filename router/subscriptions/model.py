"""A subscription: a tenant's workflow, the topic patterns it listens on, and an optional CEL filter."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import SubscriptionError
from ..envelope.model import TENANT_RE
from ..matching import filters, patterns

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
WORKFLOW_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


class Subscription(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    tenant: str
    workflow: str
    patterns: tuple[str, ...]
    filter: str | None = None
    enabled: bool = True
    updated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    # Delivery (issue: workflow delivery): paused triggers are kept, not handled; `recursion` is how often
    # the subscription may be re-triggered by its own descendants in one causation chain (loop guard);
    # a failing trigger is retried up to `max_attempts` calls while younger than `max_age_s`.
    paused: bool = False
    recursion: int = Field(default=0, ge=0, le=1000)
    max_attempts: int = Field(default=5, ge=1, le=1000)
    max_age_s: int = Field(default=86400, ge=1)

    @property
    def key(self) -> str:
        """The compacted topic's key: a tenant's names are its own."""
        return f"{self.tenant}/{self.name}"

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "tenant": self.tenant, "workflow": self.workflow,
                "patterns": list(self.patterns), "filter": self.filter, "enabled": self.enabled,
                "updated_at": self.updated_at, "paused": self.paused, "recursion": self.recursion,
                "max_attempts": self.max_attempts, "max_age_s": self.max_age_s}

    def to_json(self) -> dict[str, Any]:
        out = self.to_record()
        out["updated_at"] = self.updated_at.isoformat()
        return out


def _check(regex: re.Pattern[str], value: Any, field: str, what: str) -> str:
    if not isinstance(value, str) or not regex.match(value):
        raise SubscriptionError(f"{value!r} is not a valid {what}", field=field)
    return value


def build(*, name: str, tenant: str, workflow: str, patterns_: list[str] | tuple[str, ...],
          filter: str | None = None, enabled: bool = True,
          **delivery: Any) -> tuple[Subscription, filters.Filter | None]:
    """Validate every part; the compiled filter comes back so callers never compile twice."""
    _check(NAME_RE, name, "name", "subscription name (lowercase [a-z0-9._-], 1-128 characters)")
    _check(TENANT_RE, tenant, "tenant", "tenant ([A-Za-z0-9._-], 1-128 characters)")
    _check(WORKFLOW_RE, workflow, "workflow", "workflow name (lowercase [a-z0-9_-], 1-128 characters)")
    if not patterns_:
        raise SubscriptionError("at least one pattern is needed (e.g. --on user.provisioned)", field="pattern")
    for p in patterns_:
        patterns.parse(p)
    compiled = filters.compile_filter(filter) if filter is not None else None
    unknown = set(delivery) - DELIVERY_FIELDS
    if unknown:
        raise SubscriptionError(f"unknown subscription setting {', '.join(sorted(unknown))}", field=min(unknown))
    for field_, value in delivery.items():
        _check_delivery(field_, value)
    sub = Subscription(name=name, tenant=tenant, workflow=workflow, patterns=tuple(dict.fromkeys(patterns_)),
                       filter=filter, enabled=enabled, **{k: v for k, v in delivery.items() if v is not None})
    return sub, compiled


DELIVERY_FIELDS = {"paused", "recursion", "max_attempts", "max_age_s"}
_LIMITS = {"recursion": (0, 1000), "max_attempts": (1, 1000), "max_age_s": (1, 10 * 365 * 86400)}


def _check_delivery(field_: str, value: Any) -> None:
    if value is None or field_ == "paused":
        if field_ == "paused" and not isinstance(value, bool):
            raise SubscriptionError(f"paused must be true or false, not {value!r}", field=field_)
        return
    low, high = _LIMITS[field_]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SubscriptionError(f"{field_} must be a whole number from {low} to {high}, not {value!r}", field=field_)


def from_record(record: dict[str, Any]) -> Subscription:
    return Subscription(name=record["name"], tenant=record["tenant"], workflow=record["workflow"],
                        patterns=tuple(record["patterns"]), filter=record["filter"],
                        enabled=record["enabled"], updated_at=record["updated_at"], paused=record["paused"],
                        recursion=record["recursion"], max_attempts=record["max_attempts"],
                        max_age_s=record["max_age_s"])
