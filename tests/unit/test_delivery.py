"""The delivery core without Kafka: key order under concurrency, retries that hold only their key,
pause, rate limit, offsets committed behind the slowest with the rest in metadata, lineage, signatures."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from router import lineage
from router.delivery import offsets
from router.delivery.policy import RetryPolicy
from router.delivery.scheduler import Scheduler, TokenBucket, Work
from router.delivery.webhook import sign, verify


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def work(offset: int, key: str, sub: str = "s") -> Work:
    w = Work(("t", 0), offset, ("t", 0, key), None)
    w.context["sub"] = sub
    return w


def make(concurrency=4, paused=lambda w: False, rate=None, clock=None):
    started: list[Work] = []
    s = Scheduler(concurrency, started.append, paused, rate, clock=clock or Clock())
    return s, started


def test_same_key_runs_in_order_other_keys_in_parallel():
    s, started = make(concurrency=8)
    for i, key in enumerate("aabbbc"):
        s.add(work(i, key))
    s.dispatch()
    assert [w.offset for w in started] == [0, 2, 5]  # one per key
    s.finished(started[0])
    s.dispatch()
    assert [w.offset for w in started] == [0, 2, 5, 1]


def test_concurrency_caps_calls_in_flight():
    s, started = make(concurrency=2)
    for i in range(5):
        s.add(work(i, f"k{i}"))
    s.dispatch()
    assert len(started) == 2 and s.in_flight == 2
    s.finished(started[1])
    s.dispatch()
    assert [w.offset for w in started] == [0, 1, 2]


def test_a_retry_waits_at_the_head_of_its_key_only():
    clock = Clock()
    s, started = make(concurrency=4, clock=clock)
    s.add(work(0, "a"))
    s.add(work(1, "a"))
    s.add(work(2, "b"))
    s.dispatch()
    assert [w.offset for w in started] == [0, 2]
    s.retry(started[0], 5.0)  # offset 0 failed: retry in 5 s
    s.finished(started[1])  # b goes on
    s.add(work(3, "b"))
    s.dispatch()
    assert [w.offset for w in started] == [0, 2, 3]  # b's next started; a's 1 did not overtake a's 0
    assert s.next_wake() == pytest.approx(5.0)
    clock.t = 5.0
    s.dispatch()
    assert started[-1].offset == 0 and started[-1].attempts == 2


def test_paused_subscription_is_held_then_released_in_order():
    paused = {"p"}
    s, started = make(paused=lambda w: w.context["sub"] in paused)
    s.add(work(0, "a", "p"))
    s.add(work(1, "a", "q"))  # same key, behind the paused one
    s.add(work(2, "b", "q"))
    s.dispatch()
    assert [w.offset for w in started] == [2]
    assert s.held == 2
    paused.clear()
    assert s.release_held() == 1
    s.dispatch()
    s.finished(started[1])
    s.dispatch()
    assert [w.offset for w in started] == [2, 0, 1]


def test_rate_limit_spaces_starts():
    clock = Clock()
    s, started = make(concurrency=100, rate=10, clock=clock)
    for i in range(20):
        s.add(work(i, f"k{i}"))
    s.dispatch()
    assert len(started) == 1
    assert s.next_wake() == pytest.approx(0.1)
    clock.t = 1.0
    s.dispatch()
    assert len(started) == 2  # burst 1: the bucket does not save up
    for step in range(1, 11):
        clock.t = 1.0 + step * 0.1 + 1e-9
        s.dispatch()
    assert len(started) == 12


def test_drop_forgets_revoked_partitions_and_ignores_their_outcome():
    s, started = make()
    s.add(work(0, "a"))
    s.add(work(1, "a"))
    s.dispatch()
    assert s.drop([("t", 0)]) == 2
    s.finished(started[0])  # the call in flight finishes after the revoke
    assert s.in_flight == 0 and s.queued == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=60), st.integers(1, 6), st.integers(0, 2**32))
def test_random_completion_order_keeps_every_keys_order(keys, concurrency, seed):
    """Whatever order calls finish or fail in, each key's triggers complete in offset order, each once."""
    rnd = random.Random(seed)
    clock = Clock()
    s, started = make(concurrency=concurrency, clock=clock)
    for i, key in enumerate(keys):
        s.add(work(i, key))
    running: list[Work] = []
    done: list[Work] = []
    for _ in range(10_000):
        s.dispatch()
        running += [w for w in started if w not in running and w.running]
        started.clear()
        assert s.in_flight == len(running) <= concurrency
        if not running:
            if s.queued == 0:
                break
            clock.t += 10
            continue
        w = running.pop(rnd.randrange(len(running)))
        if rnd.random() < 0.3:
            s.retry(w, rnd.random())
        else:
            s.finished(w)
            done.append(w)
    assert sorted(w.offset for w in done) == list(range(len(keys)))
    for key in set(keys):
        mine = [w.offset for w in done if w.key[2] == key]
        assert mine == sorted(mine)


def test_offsets_commit_behind_the_slowest_and_remember_the_rest():
    p = offsets.PartitionOffsets(committed=100)
    for o in range(100, 110):
        assert p.add(o)
    for o in (100, 101, 103, 104, 105, 109):
        p.finish(o)
    low, meta = p.commit_point()
    assert low == 102
    assert offsets.decode(low, meta) == {103, 104, 105, 109}
    restarted = offsets.PartitionOffsets(low, offsets.decode(low, meta))
    fresh = [o for o in range(102, 110) if restarted.add(o)]
    assert fresh == [102, 106, 107, 108]  # only what was unfinished is delivered again
    assert restarted.low_water() == 102


def test_offset_metadata_fits_the_broker_limit():
    done = set(range(1, 20000, 2))  # worst case: every other offset finished
    meta = offsets.encode(0, done)
    assert len(meta) <= offsets.MAX_METADATA
    assert offsets.decode(0, meta) <= done  # what is cut is delivered again, nothing skipped wrongly
    assert offsets.decode(5, "garbage") == set() and offsets.decode(5, "evbus1:x-y") == set()


def test_retry_delay_grows_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=8.0)
    rng = random.Random(1)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        d = policy.delay(attempt, rng=rng)
        assert ceiling / 2 <= d <= ceiling
    assert policy.delay(1, at_least=30.0, rng=rng) == 30.0


def test_token_bucket():
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock)
    assert bucket.take() and not bucket.take()
    clock.t = 0.5
    assert bucket.take()


def test_lineage_headers_round_trip_and_grow_per_hop():
    root = lineage.from_headers([("other", b"x")])
    assert root is lineage.ROOT and root.headers() == []
    child = root.child("acme/a", "e1", None)
    assert (child.hops, child.chain, child.correlationid, child.causationid) == (1, ("acme/a",), "e1", "e1")
    again = lineage.from_headers(child.headers()).child("acme/b", "e2", "e1")
    assert (again.hops, again.chain, again.correlationid) == (2, ("acme/a", "acme/b"), "e1")
    assert again.times_in_chain("acme/a") == 1
    with pytest.raises(lineage.LineageError):
        lineage.from_headers([("evbus-hops", b"many")])
    with pytest.raises(lineage.LineageError):
        lineage.from_headers([("evbus-hops", b"-1")])


def test_webhook_signature_verifies_and_rejects_tampering_and_old_timestamps():
    body = b'{"a":1}'
    header = sign(b"s3cret", body)
    assert verify(b"s3cret", body, header)
    assert not verify(b"s3cret", b'{"a":2}', header)
    assert not verify(b"other", body, header)
    assert not verify(b"s3cret", body, sign(b"s3cret", body, timestamp=1_000_000))
    assert not verify(b"s3cret", body, "nonsense")
