"""One workflow's delivery loop: Kafka in, handler calls out, offsets committed behind the slowest.

The loop (one thread) fetches triggers, hands them to the Scheduler (key order, concurrency, pause,
rate), collects finished calls from the handler threads, retries or dead-letters failures, and commits
each partition at its lowest unfinished offset with the finished offsets above it in the commit's
metadata (offsets.py). At most `max_pending` triggers are held in memory; beyond that fetching pauses
(Kafka keeps the rest). SIGTERM: nothing new starts, calls in flight finish, progress is committed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone

from confluent_kafka import KafkaException, TopicPartition

from .. import lineage, metrics
from ..config import Settings
from ..errors import DecodeError, KafkaError
from ..kafka import clients
from ..kafka.admin import Topics
from ..runner import Trigger, WorkflowSpec, to_trigger
from . import offsets as offsets_mod
from .deadletters import context_headers, dlq_topic
from .policy import PermanentError, RetryLater, RetryPolicy
from .scheduler import Scheduler, Work

logger = logging.getLogger(__name__)
COMMIT_EVERY = 0.5  # seconds between offset commits while triggers finish


class WorkflowWorker:
    def __init__(self, settings: Settings, spec: WorkflowSpec, stopping: threading.Event, states=None,
                 max_pending: int = 1000, grace: float = 30.0) -> None:
        self.settings = settings
        self.spec = spec
        self.name = spec.name
        self.stopping = stopping
        self.states = states  # StateView: pause flags and retry policies of subscriptions
        self.max_pending = max(max_pending, spec.concurrency)
        self.grace = grace
        self.topic = settings.trigger_topic(spec.name)
        self.dlq_topic = dlq_topic(settings, spec.name)
        topics = Topics(settings)
        topics.ensure(self.topic, partitions=settings.trigger_partitions)
        topics.ensure(self.dlq_topic)
        self.producer = clients.producer(settings)
        self.scheduler = Scheduler(spec.concurrency, self._start, self._paused, spec.rate)
        self.offsets: dict[tuple[str, int], offsets_mod.PartitionOffsets] = {}
        self.error: BaseException | None = None
        self._done: queue.SimpleQueue[tuple[Work, Future]] = queue.SimpleQueue()
        self._fetch_paused = False
        self._committed: dict[tuple[str, int], tuple[int, str]] = {}
        self._is_async = inspect.iscoroutinefunction(spec.handler) or inspect.iscoroutinefunction(
            getattr(spec.handler, "__call__", None))
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gauges = {g: g.labels(spec.name) for g in (metrics.IN_FLIGHT, metrics.HELD, metrics.RETRYING)}

    # -- handler calls (in handler threads or the event loop) ----------------------------------------
    def _start(self, work: Work) -> None:
        trigger: Trigger = replace(work.trigger, attempt=work.attempts)
        child = trigger.lineage.child(trigger.subscription_key, trigger.event.id, trigger.event.correlationid)
        if self._is_async:
            future = asyncio.run_coroutine_threadsafe(self._call_async(trigger, child), self._loop)
        else:
            future = self._pool.submit(self._call, trigger, child)
        future.add_done_callback(lambda f, w=work: self._done.put((w, f)))

    def _call(self, trigger: Trigger, child: lineage.Lineage) -> None:
        token = lineage.current.set(child)
        try:
            with metrics.HANDLER_SECONDS.labels(self.name).time():
                self.spec.handler(trigger)
        finally:
            lineage.current.reset(token)

    async def _call_async(self, trigger: Trigger, child: lineage.Lineage) -> None:
        lineage.current.set(child)  # this task's own context
        with metrics.HANDLER_SECONDS.labels(self.name).time():
            await self.spec.handler(trigger)

    def _paused(self, work: Work) -> bool:
        sub = self.states.get(work.trigger.tenant, work.trigger.subscription) if self.states else None
        return bool(sub and sub.paused)

    def _policy(self, trigger: Trigger) -> RetryPolicy:
        sub = self.states.get(trigger.tenant, trigger.subscription) if self.states else None
        base = RetryPolicy(backoff_s=self.spec.backoff, max_backoff_s=self.spec.max_backoff)
        if sub is None:  # deleted since it was routed: the defaults
            return base
        return replace(base, max_attempts=sub.max_attempts, max_age_s=float(sub.max_age_s))

    # -- the loop --------------------------------------------------------------------------------------
    def run(self) -> None:
        consumer = clients.consumer(self.settings, self.settings.runner_group(self.name))
        if self._is_async:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name=f"{self.name}-loop", daemon=True).start()
        else:
            self._pool = ThreadPoolExecutor(self.spec.concurrency, thread_name_prefix=f"{self.name}-call")
        try:
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
            logger.info("workflow %s consuming %s (concurrency %d%s)", self.name, self.topic, self.spec.concurrency,
                        f", at most {self.spec.rate:g} calls/s" if self.spec.rate else "")
            self._consumer = consumer
            self._loop_until_stopped(consumer)
            self._drain(consumer)
        except BaseException as exc:
            self.error = exc
            logger.exception("workflow %s stopped on an error", self.name)
        finally:
            consumer.close()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)

    def _loop_until_stopped(self, consumer) -> None:
        last_commit = last_release = time.monotonic()
        while not self.stopping.is_set():
            fetched = consumer.consume(200, 0)  # paused partitions return nothing; the group stays alive
            for msg in fetched:
                self._intake(msg)
            completions = self._take_done()
            for work, future in completions:
                self._complete(work, future)
            busy = bool(fetched or completions)
            now = time.monotonic()
            if now - last_release >= 0.5:
                self.scheduler.release_held()  # a resumed subscription's triggers go on
                last_release = now
            self.scheduler.dispatch()
            self._window(consumer)
            if now - last_commit >= COMMIT_EVERY:
                self._commit(consumer)
                self._update_gauges()
                last_commit = now
            if busy:
                continue
            wake = self.scheduler.next_wake()
            wait = 0.05 if wake is None else min(wake, 0.05)
            if self.scheduler.in_flight:  # a finishing call is what most likely comes next
                try:
                    self._complete(*self._done.get(timeout=wait))
                except queue.Empty:
                    pass
            elif not self._fetch_paused:
                for msg in consumer.consume(200, wait if wake is not None else 0.1):
                    self._intake(msg)
            else:
                time.sleep(wait)

    def _drain(self, consumer) -> None:
        """Stopping: start nothing new; let the calls in flight finish (up to `grace` s); commit."""
        deadline = time.monotonic() + self.grace
        while self.scheduler.in_flight and time.monotonic() < deadline:
            try:
                self._complete(*self._done.get(timeout=0.1))
            except queue.Empty:
                consumer.poll(0)  # keep the group session alive
        if self.scheduler.in_flight:
            logger.warning("workflow %s: %d calls still running after %.0fs; they will be delivered again",
                           self.name, self.scheduler.in_flight, self.grace)
        self._commit(consumer)

    def _take_done(self) -> list[tuple[Work, Future]]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _intake(self, msg) -> None:
        if msg.error():
            logger.warning("%s: %s", self.topic, msg.error())
            return
        tp = (msg.topic(), msg.partition())
        track = self.offsets.get(tp)
        if track is None or not track.add(msg.offset()):
            return  # not ours any more, or finished before a restart (commit metadata)
        key = (tp, msg.key()) if msg.key() is not None else (tp, None, msg.offset())
        work = Work(tp, msg.offset(), key, msg)
        try:
            work.trigger = to_trigger(msg)
        except DecodeError as exc:
            work.error_type, work.error = "DecodeError", str(exc)
            self._dead_letter(work, "undecodable")
            track.finish(msg.offset())
            return
        self.scheduler.add(work)

    def _complete(self, work: Work, future: Future) -> None:
        exc = future.exception()
        if work.cancelled:
            self.scheduler.finished(work)
            return
        if exc is None:
            metrics.TRIGGERS_HANDLED.labels(self.name, "ok").inc()
            self._finish(work)
            return
        metrics.TRIGGERS_HANDLED.labels(self.name, "error").inc()
        now = datetime.now(timezone.utc)
        work.first_failure = work.first_failure or now
        work.last_failure = now
        work.error_type = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
        work.error = str(exc) or repr(exc)
        trigger: Trigger = work.trigger
        policy = self._policy(trigger)
        age = (now - trigger.routed_at).total_seconds()
        if isinstance(exc, PermanentError):
            reason = "permanent"
        elif work.attempts >= policy.max_attempts:
            reason = "attempts-exhausted"
        elif age >= policy.max_age_s:
            reason = "max-age"
        else:
            delay = policy.delay(work.attempts, exc.after if isinstance(exc, RetryLater) else 0.0)
            logger.warning("%s failed on %s (attempt %d/%d, key %r; retry in %.2fs): %s: %s", self.name,
                           trigger.where, work.attempts, policy.max_attempts, work.msg.key(), delay,
                           work.error_type, work.error)
            self.scheduler.retry(work, delay)
            return
        self._dead_letter(work, reason)
        self._finish(work)

    def _finish(self, work: Work) -> None:
        self.scheduler.finished(work)
        track = self.offsets.get(work.tp)
        if track is not None:
            track.finish(work.offset)

    def _dead_letter(self, work: Work, reason: str) -> None:
        msg, trigger = work.msg, work.trigger
        logger.error("dead-lettering %s[%d]@%d of %s (%s) after %d attempts: %s: %s", msg.topic(), msg.partition(),
                     msg.offset(), self.name, reason, work.attempts, work.error_type, work.error)
        headers = list(msg.headers() or []) + context_headers(
            reason=reason, workflow=self.name, subscription=trigger.subscription if trigger else "",
            error_type=work.error_type, error=work.error, attempts=work.attempts,
            first_failure=work.first_failure, last_failure=work.last_failure, topic=msg.topic(),
            partition=msg.partition(), offset=msg.offset())
        errors: list = []
        self.producer.produce(self.dlq_topic, value=msg.value(), key=msg.key(), headers=headers,
                              on_delivery=lambda err, _m: err and errors.append(err))
        if self.producer.flush(30) or errors:  # not acknowledged: stop before its offset is committed
            raise KafkaError(f"dead letter for {msg.topic()}[{msg.partition()}]@{msg.offset()} not "
                             f"acknowledged: {errors or 'flush timed out'}")
        metrics.TRIGGERS_HANDLED.labels(self.name, "dead-lettered").inc()

    # -- offsets and the group -------------------------------------------------------------------------
    def _window(self, consumer) -> None:
        unfinished = sum(t.unfinished for t in self.offsets.values())
        if not self._fetch_paused and unfinished >= self.max_pending:
            consumer.pause(consumer.assignment())
            self._fetch_paused = True
            logger.info("workflow %s: %d triggers unfinished; fetching paused", self.name, unfinished)
        elif self._fetch_paused and unfinished <= self.max_pending // 2:
            consumer.resume(consumer.assignment())
            self._fetch_paused = False

    def _commit(self, consumer, only: set | None = None) -> None:
        offsets = []
        for tp, track in self.offsets.items():
            if only is not None and tp not in only:
                continue
            point = track.commit_point()
            if point[0] >= 0 and point != self._committed.get(tp):
                offsets.append(TopicPartition(tp[0], tp[1], point[0], metadata=point[1]))
                self._committed[tp] = point
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance took the partition: its new owner redelivers
            for o in offsets:
                self._committed.pop((o.topic, o.partition), None)
            logger.warning("%s: commit of %s failed, those triggers will be delivered again: %s", self.name,
                           ", ".join(f"{o.topic}[{o.partition}]@{o.offset}" for o in offsets), exc)

    def _on_assign(self, consumer, partitions) -> None:
        committed = consumer.committed(partitions, timeout=30)
        for tp in committed:
            start = tp.offset if tp.offset >= 0 else -1
            done = offsets_mod.decode(start, tp.metadata) if start >= 0 else set()
            self.offsets[(tp.topic, tp.partition)] = offsets_mod.PartitionOffsets(start, done)
            if done:
                logger.info("%s[%d]: %d triggers above offset %d were handled before the restart; skipped",
                            tp.topic, tp.partition, len(done), start)
        self._fetch_paused = False

    def _on_revoke(self, consumer, partitions) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._commit(consumer, gone)
        self._forget(gone)

    def _on_lost(self, consumer, partitions) -> None:
        self._forget({(p.topic, p.partition) for p in partitions})

    def _forget(self, gone: set) -> None:
        dropped = self.scheduler.drop(gone)
        for tp in gone:
            self.offsets.pop(tp, None)
            self._committed.pop(tp, None)
        if dropped:
            logger.info("workflow %s: %d queued triggers of revoked partitions left to their new owner",
                        self.name, dropped)

    def _update_gauges(self) -> None:
        self._gauges[metrics.IN_FLIGHT].set(self.scheduler.in_flight)
        self._gauges[metrics.HELD].set(self.scheduler.held)
        self._gauges[metrics.RETRYING].set(self.scheduler.retrying)
