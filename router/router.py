"""The routing loop: poll → decode → match → produce → maybe commit, all inside Kafka transactions.

One consumer group over every `events.*` topic (a regex subscription, so a new domain is picked up on
the next metadata refresh). Per event: tenant scope → pattern → filter → one trigger per matching
subscription on `triggers.<workflow>`, keyed by the event's key. A record that is not a valid event goes
to the dead-letter topic, in the same transaction, with headers saying why and where it came from.

A transaction that cannot be delivered (a trigger too large for the cluster, a topic the router may not
write) is aborted and its records are routed again one per transaction; the one that fails alone is
dead-lettered with reason `undeliverable`. Nothing is skipped and the router does not stall on it.

Loops (lineage.py): an event at the hop limit is not routed at all, and a subscription already in the
event's causation chain more often than its `recursion` allows gets no trigger; both are dead-lettered
with reason `loop`, and the event's other subscriptions are routed as usual.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

import orjson
from confluent_kafka import KafkaException, Message

from . import lineage, metrics
from .config import Settings
from .envelope import cloudevents, codec, decode, triggers
from .envelope.cloudevents import Decoded
from .errors import DecodeError
from .kafka import clients, guards
from .kafka.admin import Topics
from .kafka.transaction import Checkpoint, DeliveryFailed, classify, fatal
from .matching import index as matching
from .ratelimit import LogLimiter
from .subscriptions.store import LiveView

try:
    from . import _route as native  # the common case of _route in C, built by `pip install` (setup.py)
except ImportError:
    native = None

logger = logging.getLogger(__name__)
DLQ_VALUE_LIMIT = clients.MAX_MESSAGE_BYTES - 128 * 1024  # room for the dead letter's own headers
GROWTH = 8  # a transaction grows up to this many batches while the one before it commits
COMMIT_POLL = 0.002  # seconds to wait for records while a due transaction waits for the commit in flight
FREEZE_EVERY = 10_000  # plans and wires made since the last freeze that make the router freeze again
GC_EVERY_S = 30.0  # the router's own collection of what is not frozen (the automatic one is off)


class Router:
    checkpoint_type = Checkpoint  # how transactions are made (benchmarks/batching.py measures another client)
    fast_route = True  # the common case in C (router/_route.c) where built; False: every record through _route

    def __init__(self, settings: Settings, *, instance: str | None = None, batch_size: int = 2000,
                 commit_interval: float = 0.01, idle_poll: float = 0.2, group: str | None = None,
                 max_buffered: int = 50_000) -> None:
        self.settings = settings
        self.max_buffered = max_buffered
        self.group = group or settings.router_group
        self.instance = instance or socket.gethostname()
        self.batch_size = batch_size
        self.commit_interval = commit_interval
        self.idle_poll = idle_poll
        self.topics = Topics(settings)
        self.view = LiveView(settings, before_apply=self._prepare)
        self._stopping = False
        self._filter_log = LogLimiter(logger)
        self._checkpoint: Checkpoint | None = None
        self._wires: dict[str, _Wire] = {}  # per subscription: what its triggers share
        self._touched: list[_Wire] = []  # one per trigger routed since the metrics were last flushed
        self._workflows: dict[str, tuple[str, Any]] = {}  # per workflow: its trigger topic, its TRIGGERS_ROUTED child
        self._consumed: dict[str, int] = {}  # per topic, since the metrics were last flushed
        self._latency: list[int] = []  # µs from event time to routing, since the last flush
        self._isolate = 0  # records to route one per transaction after an undeliverable transaction
        self._isolated_retries = 0
        self._failed = False  # the loop ended on an exception: a revoke at close aborts instead of committing
        self._frozen_at = 0  # plans and wires made when the long-lived objects were last frozen
        self._collected_at = time.monotonic()
        self._fast = self._fast_context() if native is not None and self.fast_route else None

    def _fast_context(self) -> tuple:
        """What router/_route.c reads, in the order it reads it: the view (its lock and index, read per
        event), where _route's checks and parts live, and the router's own per-event state."""
        return (self.view, matching.SubscriptionIndex, cloudevents._VALID, self.settings.max_event_bytes,
                codec.FRAME, codec._read_v1, orjson.loads, matching.candidates, matching._KEY, codec.micros,
                self._consumed, self._latency, self._wires, self._touched, self._wire, triggers.build, [],
                cloudevents.READ_HEADERS + lineage.HEADERS, matching.NO_META, cloudevents.check_pair,
                matching.evaluate, self._report)

    def _subscription_kinds(self) -> dict:
        """For the metric: under the view's lock, so a subscription being replaced is not seen half-way."""
        with self.view.lock:
            return dict(getattr(self.view.index, "kinds", {}))

    def stop(self, *_: object) -> None:
        self._stopping = True

    def _prepare(self, sub) -> None:
        """Create a subscription's trigger topic before it can match: never inside a transaction."""
        self.topics.ensure(self.settings.trigger_topic(sub.workflow), partitions=self.settings.trigger_partitions)

    def run(self) -> None:
        guards.check(self.settings, "router")  # before creating anything: refuse settings that lose events
        self.topics.ensure_bus_topics()
        with ExitStack() as stack:
            self.view.start()
            stack.callback(self.view.stop)
            metrics.SUBSCRIPTIONS.source = self._subscription_kinds
            stack.callback(setattr, metrics.SUBSCRIPTIONS, "source", None)
            # The loaded subscriptions live as long as the router: out of the collector's full passes,
            # which otherwise walk every compiled filter now and then (pauses of 20-40 % at 100,000).
            # From here on the router collects by itself, at commits (_maybe_collect).
            self._freeze()
            gc.disable()
            stack.callback(gc.enable)
            self.producer = clients.producer(self.settings, transactional_id=f"evbus-router-{self.instance}")
            self.consumer = clients.consumer(self.settings, self.group,
                                             **{"topic.metadata.refresh.interval.ms": 1000})
            stack.callback(self.consumer.close)
            self._checkpoint = self.checkpoint_type(self.producer, self.consumer, self.max_buffered)
            self.consumer.subscribe([self.settings.events_regex], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_lost)
            logger.info("router %s routing events.* with %d subscriptions", self.instance, len(self.view.index))
            self._loop()
            self._commit()  # the records routed since the last commit
            logger.info("router %s stopped cleanly", self.instance)

    def _freeze(self) -> None:
        """Collect, then move what is alive out of the cyclic collector's reach (refcounting still frees
        it): the loaded subscriptions, and later the plans and wires routing builds as it meets (tenant,
        type) pairs and subscriptions. Left in the collector, they were walked by its full passes again and
        again: at 100,000 subscriptions, 22 full collections of 230 ms each in a 200,000-event run, with
        the router at 11,400 events/s, against 14,900 with the automatic collector off."""
        gc.collect()
        gc.freeze()
        self._frozen_at = self.view.index.plans_built + len(self._wires)
        self._collected_at = time.monotonic()

    def _maybe_collect(self) -> None:
        """The router's own garbage collection (the automatic one is off while it routes): a freeze when
        plans and wires have grown by half (at least FREEZE_EVERY) since the last, else a collection of
        what is not frozen every GC_EVERY_S. Routing makes no reference cycles of its own; this frees those
        of rarer paths (errors, logging) and of what the client libraries make."""
        made = self.view.index.plans_built + len(self._wires)
        if made - self._frozen_at >= max(FREEZE_EVERY, self._frozen_at // 2):
            self._freeze()
        elif time.monotonic() - self._collected_at >= GC_EVERY_S:
            gc.collect()
            self._collected_at = time.monotonic()

    def _route_batch(self, timeout: float) -> int:
        """Wait for the first record only, then take what is already fetched (never wait for a full batch),
        and route them; returns how many were taken.

        The first record is routed before consume() is called, because a rebalance callback can run inside
        consume() and nothing taken may be unrouted when it does. Routed after the callback, the record went
        into the next transaction, which commits no offset for it, while the partition's next owner (this
        router again, or another) read it again from the committed offset: one trigger twice, out of order.
        The committed offset was before it because on_revoke commits only what was routed (nothing, when
        the last commit had just ended) and on_lost aborts. Seen in the chaos run and reproduced in
        tests/kafka/test_rebalance.py.
        What consume() returns needs no such care. Before librdkafka queues the callback it pauses the
        partitions it takes away, so their records met from then on are dropped; the pause's barrier reaches
        the queue before the callback returns (confluent-kafka's unassign after it waits behind the pause on
        librdkafka's ops queue) and purges what the call had gathered of them (rd_kafka_rebalance_op,
        rd_kafka_assignment_pause, rd_kafka_q_serve_rkmessages). What it gathers after that is the new
        assignment's.
        """
        first = self.consumer.poll(timeout)
        if first is None:
            return 0
        self._route_all((first,))
        rest = self.consumer.consume(self.batch_size - 1, 0)
        self._route_all(rest)
        return 1 + len(rest)

    def _route_all(self, msgs) -> None:
        """Route msgs in order into the open transaction: the common case in C (router/_route.c: a root
        event in the current version), every other record through _route."""
        cp = self._checkpoint
        if self._fast is None or getattr(cp, "outbox", None) is None:  # (a checkpoint that takes records one by one)
            for msg in msgs:
                self._route(msg)
                cp.pending += 1
            return
        at, n = 0, len(msgs)
        while at < n:
            done, slow = native.route(self._fast, msgs, at, cp.outbox, cp.max_buffered)
            cp.pending += done - at
            cp.sent()  # hands the outbox over once max_buffered records wait
            at = done
            if slow:
                self._route(msgs[at])
                cp.pending += 1
                at += 1

    def _loop(self) -> None:
        try:
            self._loop_until_stopped()
        except BaseException:
            # A record may be half routed: the consumer's position is past records whose triggers are not
            # all in the transaction. close() runs on_revoke next, which must abort, not commit.
            self._failed = True
            raise

    def _loop_until_stopped(self) -> None:
        cp = self._checkpoint
        assert cp is not None
        while not self._stopping:
            if self.view.error is not None:
                raise RuntimeError(f"subscription view failed: {self.view.error}")
            if self._isolate:
                self._route_isolated()
                continue
            if cp.pending == 0 and cp.commit_settled:
                self._commit()  # a background commit ended while idle: surface its failure now
            # A transaction stays open at least as long as the last commit took: when commits are slow (many
            # partitions, a busy broker) transactions grow instead of the backlog, so latency stays bounded.
            interval = max(self.commit_interval, cp.last_commit_s)
            due = cp.pending and (cp.pending >= self.batch_size or time.monotonic() - cp.opened_at >= interval)
            if due and cp.in_flight and cp.pending < self.batch_size * GROWTH:
                # Group commit: while the last transaction commits, this one grows instead of waiting.
                # A transaction costs about the same whatever it holds, so when commits are slow (many
                # trigger partitions, a busy broker) each carries more and throughput holds.
                wait = COMMIT_POLL
            elif due:
                self._commit(wait=False)  # the next batch is routed while this one commits
                continue
            else:
                wait = self.idle_poll if cp.pending == 0 else max(0.0, cp.opened_at + interval - time.monotonic())
            if not self._route_batch(wait):
                self._maybe_collect()  # idle: the subscription thread may still be making garbage

    def _commit(self, wait: bool = True) -> None:
        """Commit what was routed; with wait=False the commit runs on in the background (the next one,
        or any synchronous commit, waits for it and handles its failure here)."""
        cp = self._checkpoint
        assert cp is not None
        pending = cp.pending
        self._flush_metrics()
        try:
            cp.start_commit()
            self._maybe_collect()  # while the commit runs: its records are handed over and gone from here
            if wait:
                cp.finish_commit()
        except DeliveryFailed as exc:
            logger.warning("transaction of %d records not delivered (%s); aborting, then routing them one "
                           "per transaction", exc.pending or pending, exc)
            self._isolate = max(self._isolate, exc.pending or pending)
            cp.abort()
        except KafkaException as exc:
            if classify(exc) == "fatal":
                raise fatal(exc) from None
            logger.warning("commit failed, aborting and rewinding: %s", exc)
            cp.abort()

    def _route_isolated(self) -> None:
        cp = self._checkpoint
        assert cp is not None
        msg = self.consumer.poll(self.idle_poll)
        if msg is None:
            return
        self._isolate -= 1
        cp.checked = True  # per-record delivery reports: a failure names this record
        self._route(msg)
        cp.pending += 1
        try:
            cp.commit()
            self._isolated_retries = 0
            self._maybe_collect()
            return
        except DeliveryFailed as exc:
            if not exc.permanent:
                self._retry_isolated(msg, exc)
                return
            cp.abort(rewind=False)  # the position stays after msg: it is dead-lettered instead
            reason = str(exc)
        except KafkaException as exc:
            if classify(exc) == "fatal":
                raise fatal(exc) from None
            self._retry_isolated(msg, exc)
            return
        for keep_value in (True, False):
            self._dead_letter(msg, "undeliverable", reason, keep_value=keep_value)
            cp.pending += 1
            try:
                cp.commit()
                return
            except DeliveryFailed as exc:
                cp.abort(rewind=False)
                reason = f"{reason}; the dead letter with its value failed too: {exc}"
        raise fatal(RuntimeError(f"cannot dead-letter {_where(msg)}: {reason}"))

    def _retry_isolated(self, msg: Message, exc: Exception) -> None:
        self._isolated_retries += 1
        if self._isolated_retries > 5:
            raise fatal(RuntimeError(f"{_where(msg)} failed 5 times for passing reasons; last: {exc}"))
        logger.warning("%s not delivered for a passing reason, routing it again: %s", _where(msg), exc)
        self._isolate += 1
        self._checkpoint.abort()

    def _on_assign(self, consumer, partitions) -> None:
        logger.info("partitions assigned: %s", _tps(partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        if self._failed:
            logger.warning("partitions revoked: %s; routing failed, aborting the open transaction",
                           _tps(partitions))
            self._checkpoint.abort(rewind=False)  # _failed is set only by the loop, which has a checkpoint
            return
        logger.info("partitions revoked: %s; committing what was routed", _tps(partitions))
        self._commit()

    def _on_lost(self, consumer, partitions) -> None:
        logger.warning("partitions lost: %s; aborting the open transaction", _tps(partitions))
        if self._checkpoint is not None:
            self._checkpoint.abort(rewind=False)

    def _route(self, msg: Message) -> None:
        err = msg.error()
        if err:
            if err.fatal():  # e.g. a fenced static member: its partitions are gone without a callback
                raise fatal(KafkaException(err))
            logger.warning("consumer error: %s", err)
            return
        topic = msg.topic()
        self._consumed[topic] = self._consumed.get(topic, 0) + 1
        try:
            headers = msg.headers()  # a new list on every call: read once
            decoded = decode(msg.value(), headers, self.settings.max_event_bytes)
        except DecodeError as exc:
            self._dead_letter(msg, exc.reason, exc.detail)
            return
        except UnicodeDecodeError as exc:  # a header name that is not UTF-8 (confluent-kafka decodes them)
            self._dead_letter(msg, "bad-headers", str(exc))
            return
        try:
            lin = lineage.from_headers(headers) if headers else lineage.ROOT
        except lineage.LineageError as exc:
            self._dead_letter(msg, "bad-headers", str(exc))
            return
        event = decoded.event
        if lin.hops >= self.settings.hop_limit:
            self._dead_letter(msg, "loop", f"hop limit {self.settings.hop_limit} reached (hops {lin.hops}, "
                                           f"correlation {event.correlationid}, chain {','.join(lin.chain)})")
            return
        with self.view.lock:  # per event: sending below may wait for a commit, and the view must not
            result = self.view.index.match(event.tenant, event.type, decoded.payload, event.meta)
        if result.errors:
            self._report(result.errors, event, msg)
        now = time.time_ns() // 1000
        matched = result.matched
        if matched:
            cycles = []
            if lin.chain:  # a descendant of triggers: each subscription's recursion limit
                allowed = []
                for entry in matched:
                    if lin.times_in_chain(entry.key) > entry.recursion:
                        cycles.append(f"{entry.key} (recursion {entry.recursion})")
                    else:
                        allowed.append(entry)
                matched = allowed
            self._triggers(msg, topic, decoded, matched, now, lin)
            if cycles:
                self._dead_letter(msg, "loop", f"cycle: {', '.join(cycles)} re-triggered by its own descendant "
                                               f"(chain {','.join(lin.chain)}; correlation {event.correlationid})")
        self._latency.append(now - codec.micros(event.time))

    def _triggers(self, msg: Message, topic: str, decoded: Decoded, matched: list, now: int,
                  lin: lineage.Lineage) -> None:
        """One trigger per matched subscription into the open transaction (triggers.build: C where built)."""
        if not matched:
            return
        cp = self._checkpoint
        outbox = getattr(cp, "outbox", None)  # a checkpoint that takes records one at a time has none
        records = outbox if outbox is not None else []
        # encoded once per event: the routing time, where the event was read, its id (the idempotency keys')
        stamp, source = codec.avro_long(now), codec.source_tail(topic, msg.partition(), msg.offset())
        key, extra, event_id = msg.key(), lin.headers(), decoded.event.id.encode()
        at, wired = 0, -1
        while (at := triggers.build(matched, self._wires, codec.FRAME, decoded.body, stamp, source, key, extra,
                                    event_id, records, self._touched, at)) < len(matched):
            if at == wired:  # a wire just made for it was refused: a bug, not a record to skip
                raise RuntimeError(f"no trigger can be built for {matched[at].key}")
            self._wire(matched[at])  # its first trigger, or its subscription changed
            wired = at
        if outbox is not None:
            cp.sent()
        else:
            for record in records:
                cp.send(*record)

    def _wire(self, entry) -> "_Wire":
        """What every trigger of a subscription shares, made once per subscription (and again when it changes)."""
        made = self._workflows.get(entry.workflow)
        if made is None:  # one topic str per workflow, shared by its wires (the hand-over's topic handles are
            # found by name, and by pointer first); labels() takes a lock and a lookup
            made = self._workflows[entry.workflow] = (self.settings.trigger_topic(entry.workflow),
                                                      metrics.TRIGGERS_ROUTED.labels(entry.workflow))
        topic, routed = made
        self.topics.ensure(topic, partitions=self.settings.trigger_partitions)  # cached: made with the subscription
        # A replaced wire with uncounted triggers is still in self._touched: the next flush counts them.
        wire = self._wires[entry.key] = _Wire(entry, topic, routed)
        return wire

    def _report(self, errors: list, event: Any, msg: Message) -> None:
        """Filters that erred on an event (MatchResult.errors): counted, logged, no match. router/_route.c
        calls it too."""
        for entry, error in errors:
            metrics.FILTER_ERRORS.add((entry.tenant, entry.name))
            self._filter_log.warning("filter of %s failed on %s (%s): %s; counted as no match",
                                     entry.key, event.id, _where(msg), error)

    def _flush_metrics(self) -> None:
        """Counts kept in plain dicts while routing go to Prometheus once per transaction (an inc() takes a
        lock and costs more than the rest of a trigger's bookkeeping)."""
        for topic, n in self._consumed.items():
            metrics.EVENTS_CONSUMED.labels(topic).inc(n)
        self._consumed.clear()
        if self._touched:
            matches: list = []
            for wire, count in Counter(self._touched).items():  # counted in C
                wire.flush(count, matches)
            metrics.MATCHES.add_many(matches)  # one lock for the transaction's subscriptions
            self._touched.clear()
        if self._latency:
            metrics.observe_many(metrics.ROUTING_LATENCY, [max(0.0, us / 1e6) for us in self._latency])
            self._latency.clear()

    def _dead_letter(self, msg: Message, reason: str, detail: str, keep_value: bool = True) -> None:
        logger.warning("dead-lettering %s: %s: %s", _where(msg), reason, detail)
        value = msg.value()
        try:
            headers = list(msg.headers() or [])
        except UnicodeDecodeError:
            headers = []
        if value is not None and (len(value) > DLQ_VALUE_LIMIT or not keep_value):
            headers.append(("evbus-dlq-value-dropped", str(len(value)).encode()))
            value = None
        headers += [("evbus-dlq-reason", reason.encode()), ("evbus-dlq-detail", detail[:2000].encode()),
                    ("evbus-dlq-topic", msg.topic().encode()), ("evbus-dlq-partition", str(msg.partition()).encode()),
                    ("evbus-dlq-offset", str(msg.offset()).encode()),
                    ("evbus-dlq-time", datetime.now(timezone.utc).isoformat().encode())]
        self._produce(self.settings.deadletter_topic, msg.key(), value, headers)
        metrics.DEAD_LETTERS.labels(reason).inc()

    def _produce(self, topic: str, key, value, headers) -> None:
        assert self._checkpoint is not None
        self._checkpoint.send(topic, key, value, headers)


class _Wire:
    """What every trigger of one subscription shares (`parts`, made by triggers.parts()), and the metrics
    its triggers are counted in."""

    __slots__ = ("parts", "labels", "_routed")

    def __init__(self, entry, topic: str, routed) -> None:
        self.parts, self._routed = triggers.parts(entry, topic), routed
        self.labels = (entry.tenant, entry.name)

    def flush(self, count: int, matches: list) -> None:
        """Count `count` triggers in the workflow's metric; the subscription's count goes to `matches`."""
        self._routed.inc(count)
        matches.append((self.labels, count))


def _where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


def _tps(partitions) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "none"


def run(settings: Settings, **kwargs) -> None:
    """Route until SIGTERM or SIGINT, then commit what was routed and leave the group."""
    router = Router(settings, **kwargs)
    signal.signal(signal.SIGTERM, router.stop)
    signal.signal(signal.SIGINT, router.stop)
    router.run()
