"""The independent verifier: reads every trigger topic from the start and compares with what the publisher
had acknowledged. It shares nothing with the router but the wire format.

Checks: every acknowledged event reaches each trigger topic it should (missing), no (event, subscription)
twice (duplicates), per-key order on each trigger partition (order), the workflow runner handled every
trigger of its workflow (unhandled). An aborted record visible to read_committed would show up as a
duplicate (its event is routed again in a committed transaction); a read_uncommitted pass counts the
aborted records (offsets it returns that the committed pass does not), the evidence that aborts happened.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from router.envelope import codec

# The fixed subscription set: name → (workflow, filter, the same predicate in Python for the expectation)
SUBSCRIPTIONS = {
    "all": ("chaos-all", None, lambda n: True),
    "even": ("chaos-even", "event.n % 2 == 0", lambda n: n % 2 == 0),
    "fifth": ("chaos-fifth", "event.n % 5 == 0", lambda n: n % 5 == 0),
}


def expected(acked: dict[str, dict]) -> dict[str, set[str]]:
    """Trigger topic suffix (workflow) → the event ids that must reach it."""
    out: dict[str, set[str]] = {wf: set() for wf, _, _ in SUBSCRIPTIONS.values()}
    for event_id, payload in acked.items():
        for wf, _, wants in SUBSCRIPTIONS.values():
            if wants(payload["n"]):
                out[wf].add(event_id)
    return out


def read_topic(bootstrap: str, topic: str, isolation: str, timeout: float = 120) -> list:
    """Every record of `topic` to its end (high watermark for read_uncommitted, last stable offset for
    read_committed: the run has ended, so no transaction is open)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-verify-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    try:
        partitions = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out, at_end = [], set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic} ({isolation}) not read to its end in {timeout}s")
            for m in consumer.consume(2000, 0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        at_end.add(m.partition())
                    continue
                at_end.discard(m.partition())
                out.append(m)
        return out
    finally:
        consumer.close()


def verify(bootstrap: str, namespace: str, acked: dict[str, dict], handled: set[str]) -> dict:
    want = expected(acked)
    violations: dict[str, int] = {"missing": 0, "duplicates": 0, "order": 0, "unexpected": 0, "unhandled": 0}
    detail: dict[str, object] = {}
    aborted_records = 0
    for wf, ids in want.items():
        topic = f"{namespace}triggers.{wf}"
        committed = read_topic(bootstrap, topic, "read_committed")
        uncommitted = read_topic(bootstrap, topic, "read_uncommitted")
        committed_at = {(m.partition(), m.offset()) for m in committed}
        aborted = [m for m in uncommitted if (m.partition(), m.offset()) not in committed_at]
        aborted_records += len(aborted)
        seen = Counter()
        last_seq: dict[tuple[int, str], int] = {}
        for m in committed:
            event = codec.decode_trigger(m.value())["event"]
            seen[event.id] += 1
            payload = acked.get(event.id)
            if payload is None:
                continue  # published but not acknowledged (a broker fault): allowed, not expected
            k = (m.partition(), payload["key"])
            if payload["seq"] < last_seq.get(k, -1):
                violations["order"] += 1
            last_seq[k] = payload["seq"]
        missing = ids - set(seen)
        dupes = {i: c for i, c in seen.items() if c > 1}
        wrong = {i for i in seen if i in acked and i not in ids}
        violations["missing"] += len(missing)
        violations["duplicates"] += sum(c - 1 for c in dupes.values())
        violations["unexpected"] += len(wrong)
        detail[wf] = {"expected": len(ids), "committed_records": len(committed),
                      "uncommitted_records": len(uncommitted), "missing_sample": sorted(missing)[:5],
                      "duplicate_sample": sorted(dupes)[:5]}
    unhandled = want["chaos-all"] - handled
    violations["unhandled"] = len(unhandled)
    detail["runner"] = {"handled_distinct": len(handled), "unhandled_sample": sorted(unhandled)[:5]}
    return {"violations": violations, "aborted_records": aborted_records, "detail": detail,
            "expected_triggers": sum(len(v) for v in want.values())}

