"""The workflow runner: consumes `triggers.<workflow>` (read_committed) and calls the workflow's handler
at least once per trigger, with an idempotency key (event id + subscription) that is the same on every
delivery.

    from router import workflow, PermanentError

    @workflow("send-welcome-email", concurrency=32, rate=50)
    def welcome(trigger):
        send(trigger.data["email"], key=trigger.idempotency_key)

Up to `concurrency` calls run at once (threads for plain functions, one event loop for `async def`);
triggers with the same key run one after another, in order. A failed call is retried with backoff
without holding up other keys; after the subscription's `max_attempts` or `max_age_s`, or at once on
PermanentError, the trigger goes to `triggers.<workflow>.dlq` with its context (delivery/worker.py).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from confluent_kafka import Message

from . import lineage
from .config import Settings
from .envelope import codec
from .envelope.model import Event

logger = logging.getLogger(__name__)
Handler = Callable[["Trigger"], Any]


@dataclass(frozen=True)
class Trigger:
    event: Event
    subscription: str
    tenant: str
    workflow: str
    idempotency_key: str
    routed_at: datetime
    topic: str
    partition: int
    offset: int
    lineage: lineage.Lineage = lineage.ROOT  # the event's causation chain, as the router saw it
    attempt: int = 1  # which call this is: 1 the first, 2 the first retry, ...

    @cached_property
    def data(self) -> Any:
        """The event's JSON payload."""
        return self.event.payload()

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def subscription_key(self) -> str:
        return f"{self.tenant}/{self.subscription}"


@dataclass(frozen=True)
class WorkflowSpec:
    """A workflow's handler and its delivery settings (the subscription adds attempts and max age)."""

    name: str
    handler: Handler
    concurrency: int = 16
    rate: float | None = None  # handler calls started per second, at most
    backoff: float = 1.0  # first retry delay in seconds; doubles per attempt, with jitter
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"workflow {self.name}: concurrency must be at least 1, not {self.concurrency}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"workflow {self.name}: rate must be above 0 calls/s, not {self.rate}")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise ValueError(f"workflow {self.name}: need 0 <= backoff <= max_backoff")


_REGISTRY: dict[str, WorkflowSpec] = {}


def workflow(name: str, *, concurrency: int = 16, rate: float | None = None, backoff: float = 1.0,
             max_backoff: float = 300.0) -> Callable[[Handler], Handler]:
    """Bind a handler to a workflow name; `evbus work` runs every workflow a module registers."""
    def register(handler: Handler) -> Handler:
        if name in _REGISTRY and _REGISTRY[name].handler is not handler:
            raise ValueError(f"workflow {name!r} already has a handler: {_REGISTRY[name].handler.__qualname__}")
        _REGISTRY[name] = WorkflowSpec(name, handler, concurrency, rate, backoff, max_backoff)
        return handler
    return register


def registered() -> dict[str, WorkflowSpec]:
    return dict(_REGISTRY)


def to_trigger(msg: Message) -> Trigger:
    r = codec.decode_trigger(msg.value())
    try:
        lin = lineage.from_headers(msg.headers())
    except lineage.LineageError:
        lin = lineage.ROOT  # the router checked these; a hand-written record starts a new chain
    return Trigger(event=r["event"], subscription=r["subscription"], tenant=r["tenant"], workflow=r["workflow"],
                   idempotency_key=r["idempotency_key"], routed_at=r["routed_at"], topic=msg.topic(),
                   partition=msg.partition(), offset=msg.offset(), lineage=lin)


def run(settings: Settings, specs: dict[str, WorkflowSpec]) -> None:
    """Run each workflow in its own thread until SIGTERM/SIGINT: calls in flight finish, then commit."""
    from .delivery.worker import WorkflowWorker
    from .kafka import guards
    from .subscriptions.store import StateView

    if not specs:
        raise ValueError("no workflows to run: decorate a handler with @workflow('name')")
    guards.check(settings, "runner")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    states = StateView(settings).start()
    try:
        workers = [WorkflowWorker(settings, spec, stopping, states) for spec in specs.values()]
        threads = [threading.Thread(target=w.run, name=f"workflow-{w.name}") for w in workers]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            if any(w.error for w in workers) or states.error:
                stopping.set()
            for t in threads:
                t.join(0.2)
    finally:
        states.stop()
    failed = [w for w in workers if w.error]
    if failed:
        raise RuntimeError(f"workflow {failed[0].name} failed: {failed[0].error}")
    logger.info("runner stopped cleanly")
