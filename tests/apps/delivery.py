"""Workflows for the delivery tests, steered by the event's payload and the environment.

Every call appends a JSON line to DELIVERY_OUT: {"wf", "phase": start|ok|fail, "n", "key", "ikey",
"attempt", "t"}. Payload fields: `fail` (fail while attempt <= fail), `sleep` (seconds), `next` (publish
this event type afterwards, same tenant and payload). Files: while DELIVERY_FAIL_FLAG exists, `always`
fails; DELIVERY_NO_SLEEP turns `sleep` off. Workflows: flaky, always, slow, ping, pong, aping.
"""

import asyncio
import json
import os
import threading
import time

from router import Publisher, Trigger, workflow

_lock = threading.Lock()
_pub = None


def _log(wf: str, phase: str, trigger: Trigger, **extra) -> None:
    line = {"wf": wf, "phase": phase, "n": trigger.data.get("n"), "key": trigger.data.get("key"),
            "ikey": trigger.idempotency_key, "attempt": trigger.attempt, "t": time.time(),
            "hops": trigger.lineage.hops, **extra}
    with _lock, open(os.environ["DELIVERY_OUT"], "a") as f:
        f.write(json.dumps(line) + "\n")


def _body(wf: str, trigger: Trigger) -> None:
    global _pub
    _log(wf, "start", trigger)
    if not os.environ.get("DELIVERY_NO_SLEEP"):
        time.sleep(float(trigger.data.get("sleep", 0)))
    if trigger.attempt <= int(trigger.data.get("fail", 0)):
        _log(wf, "fail", trigger)
        raise RuntimeError(f"failing attempt {trigger.attempt}")
    if trigger.data.get("next"):
        with _lock:
            if _pub is None:
                _pub = Publisher(source=f"workflow/{wf}")
        # ping-pong: publish the type named in `next`, naming this event's type as the one after
        _pub.publish(trigger.data["next"], {**trigger.data, "next": trigger.event.type}, tenant=trigger.tenant)
        _pub.flush()
    _log(wf, "ok", trigger)


@workflow("flaky", backoff=0.5, max_backoff=1.0)
def flaky(trigger: Trigger) -> None:
    _body("flaky", trigger)


@workflow("always", backoff=0.05)
def always(trigger: Trigger) -> None:
    _log("always", "start", trigger)
    if os.path.exists(os.environ.get("DELIVERY_FAIL_FLAG", "/nonexistent")):
        raise ValueError("the downstream API rejected the record")
    _log("always", "ok", trigger)


@workflow("slow", concurrency=128)
def slow(trigger: Trigger) -> None:
    _body("slow", trigger)


@workflow("ping", backoff=0.05)
def ping(trigger: Trigger) -> None:
    _body("ping", trigger)


@workflow("pong", backoff=0.05)
def pong(trigger: Trigger) -> None:
    _body("pong", trigger)


@workflow("aping", concurrency=8, backoff=0.05)
async def aping(trigger: Trigger) -> None:
    _log("aping", "start", trigger)
    await asyncio.sleep(float(trigger.data.get("sleep", 0)))
    if trigger.attempt <= int(trigger.data.get("fail", 0)):
        raise RuntimeError(f"failing attempt {trigger.attempt}")
    _log("aping", "ok", trigger)
