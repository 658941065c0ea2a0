"""The event as the bus sees it: CloudEvents 1.0 attributes, tenant, causation chain, JSON payload."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from ..errors import EventValidationError

TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_type(event_type: str) -> str:
    """A type is two or more lowercase dot-separated segments: `user.provisioned`, `backup.job.failed`."""
    if not isinstance(event_type, str) or not TYPE_RE.match(event_type):
        raise EventValidationError(
            f"event type {event_type!r} is not lowercase dot-separated segments of [a-z0-9_-] "
            "with at least two segments (e.g. 'user.provisioned')")
    return event_type


def check_tenant(tenant: Any) -> str:
    if not tenant or not isinstance(tenant, str):
        raise EventValidationError("tenant is missing: every event belongs to a tenant")
    if not TENANT_RE.match(tenant):
        raise EventValidationError(f"tenant {tenant!r} must be 1-128 characters of [A-Za-z0-9._-]")
    return tenant


def encode_data(data: Any, max_bytes: int) -> bytes:
    """The payload as UTF-8 JSON, refused when it is not JSON-serialisable or too large."""
    try:
        raw = orjson.dumps(data)
    except TypeError as exc:
        raise EventValidationError(f"payload is not JSON-serialisable: {exc}") from None
    if len(raw) > max_bytes:
        raise EventValidationError(f"payload is {len(raw)} bytes; the limit is {max_bytes}")
    return raw


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    source: str
    type: str
    time: datetime
    tenant: str
    data: bytes  # UTF-8 JSON, kept as bytes so the router forwards it without re-encoding
    subject: str | None = None
    datacontenttype: str = "application/json"
    specversion: str = "1.0"
    correlationid: str | None = None
    causationid: str | None = None

    @property
    def domain(self) -> str:
        return self.type.split(".", 1)[0]

    def payload(self) -> Any:
        return orjson.loads(self.data)

    def meta(self) -> dict[str, Any]:
        """The envelope as the filter sees it (`meta.type`, `meta.tenant`, ...)."""
        return {"id": self.id, "source": self.source, "type": self.type, "time": self.time,
                "tenant": self.tenant, "subject": self.subject, "specversion": self.specversion,
                "datacontenttype": self.datacontenttype, "correlationid": self.correlationid,
                "causationid": self.causationid}

    def to_dict(self) -> dict[str, Any]:
        out = self.meta()
        out["time"] = self.time.isoformat()
        out["data"] = self.payload()
        return out


def new_event(event_type: str, data: Any, *, tenant: str, source: str, max_bytes: int,
              subject: str | None = None, correlationid: str | None = None,
              causationid: str | None = None, event_id: str | None = None) -> Event:
    check_type(event_type)
    check_tenant(tenant)
    if not source:
        raise EventValidationError("source is empty: name who publishes the event (e.g. 'workflow/provisioning')")
    raw = encode_data(data, max_bytes)
    eid = event_id or str(uuid.uuid4())
    return Event(id=eid, source=source, type=event_type, time=now(), tenant=tenant, data=raw,
                 subject=subject, correlationid=correlationid or eid, causationid=causationid)
