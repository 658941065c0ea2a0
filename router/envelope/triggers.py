"""An event's trigger records, built in one call per event: the router's per-trigger work.

`build` appends, for each matched subscription, the record the checkpoint hands to the producer:
(trigger topic, the event's key, the trigger's value, its headers). The value is the event's body as it
came (never re-encoded) between the frame and the trigger's own fields: the subscription, tenant and
workflow (encoded once per subscription), the routing time and the idempotency key `<event id>:<name>`
(encoded once per event or trigger), and where the event was read. What a subscription's triggers share
is made once, by `parts()`, and kept on its wire (router.py). `build` is C (_triggers.c) where it was
built, else `build_py`, its reference (tests/unit/test_triggers_native.py holds them equal).
"""

from __future__ import annotations

from typing import Any

from . import codec

IDEMPOTENCY_HEADER = "evbus-idempotency-key"


def parts(entry: Any, topic: str) -> tuple:
    """What every trigger of one subscription (an index Entry) shares, in the order `build` reads it."""
    return (entry, topic, codec.trigger_prefix(entry.name, entry.tenant, entry.workflow),
            ("evbus-tenant", entry.tenant.encode()), ("evbus-subscription", entry.name.encode()),
            f":{entry.name}".encode())


def build_py(matched: list, wires: dict, frame: bytes, body, stamp: bytes, source: bytes, key: bytes | None,
             extra: list, event_id: bytes, outbox: list, touched: list, start: int = 0) -> int:
    """Records of matched[start:] into `outbox` and their wires into `touched`; returns len(matched), or the
    index of the first entry whose wire is missing or was made for another Entry (make it, call again)."""
    for i in range(max(start, 0), len(matched)):
        entry = matched[i]
        wire = wires.get(entry.key)
        if wire is None or wire.parts[0] is not entry:
            return i
        _, topic, prefix, tenant, subscription, suffix = wire.parts
        idem = event_id + suffix
        value = b"".join((frame, body, prefix, stamp, codec.avro_long(len(idem)), idem, source))
        outbox.append((topic, key, value, [tenant, subscription, (IDEMPOTENCY_HEADER, idem), *extra]))
        touched.append(wire)
    return len(matched)


try:
    from ._triggers import build as build_c  # built by `pip install` where a C compiler is (setup.py)
except ImportError:
    build_c = None
build = build_c or build_py
