"""Exactly-once across rebalances whose callback runs while the router holds a record it has taken.

librdkafka serves a rebalance callback inside whichever call comes next: poll(), or the consume() that
follows it. The router routes poll()'s record before calling consume(), so a revoke's commit holds it
and a loss aborts it (router.Router._route_batch). With the router's real timing a callback falls inside
consume() in about one rebalance in a hundred, so these routers are `tests.apps.slow_take`: each consume()
waits 50 ms first and most callbacks land there. A router joins and leaves (revokes), and one is stopped
past its session timeout (the loss). Every trigger is committed exactly once, in each key's order."""

from __future__ import annotations

import collections
import json
import threading
import time

from router import Publisher, SubscriptionStore
from router.envelope import codec
from tests.harness import log_end, read_all, wait_until

KEYS = 32
RATE = 2_000  # events/s while the group changes


def test_rebalance_callbacks_inside_consume_lose_duplicate_and_reorder_nothing(bus, spawn):
    SubscriptionStore(bus).put(name="all", tenant="acme", workflow="rb-all", patterns=["load.*"])
    published: list[str] = []
    done = threading.Event()

    def publish() -> None:
        with Publisher(bus) as pub:
            n = 0
            while not done.is_set():
                for _ in range(RATE // 10):
                    published.append(pub.publish("load.generated", {"n": n}, tenant="acme", key=str(n % KEYS)))
                    n += 1
                pub.flush()
                time.sleep(0.1)

    def router(n: int):
        return spawn("route", "--instance", f"rb-{n}", "--metrics-port", "0", "--batch-size", "200",
                     name=f"router-{n}", ready="routing events.*", module="tests.apps.slow_take")

    topic = bus.trigger_topic("rb-all")
    stream = threading.Thread(target=publish)
    stream.start()
    try:
        first = router(1)
        wait_until(lambda: log_end(bus, topic) > 1_000, 60, "the first router to route 1,000 events")
        second = router(2)  # a join: both routers revoke everything, then share the partitions
        wait_until(lambda: "partitions assigned" in second.output(), 60, "router-2 to be assigned partitions")
        time.sleep(2)
        first.pause()  # past the session timeout (10 s): the group moves its partitions to router-2
        time.sleep(13)
        first.resume()  # it finds its partitions lost and aborts what it had open
        wait_until(lambda: "partitions lost" in first.output(), 30, "router-1 to find its partitions lost")
        time.sleep(3)
        assert second.terminate() == 0, second.output()[-3000:]  # a leave: router-1 takes everything
        time.sleep(3)
    finally:
        done.set()
        stream.join()

    msgs = read_all(bus, topic, expect=len(published), timeout=180, idle=3)
    seen = collections.Counter()
    last: dict[int, int] = {}
    behind = 0
    for m in msgs:
        event = codec.decode_trigger(m.value())["event"]
        seen[event.id] += 1
        n = json.loads(event.data)["n"]
        if n < last.get(n % KEYS, -1):
            behind += 1
        last[n % KEYS] = max(n, last.get(n % KEYS, -1))
    print(f"\nrebalances inside consume(): {len(published)} events, {len(msgs)} triggers committed, "
          f"{first.output().count('partitions revoked')} revokes and "
          f"{first.output().count('partitions lost')} loss in router-1")
    assert set(seen) == set(published), (f"missing {len(set(published) - set(seen))}, "
                                         f"unexpected {len(set(seen) - set(published))}")
    duplicates = {k: c for k, c in seen.items() if c > 1}
    assert not duplicates, f"{len(duplicates)} events triggered more than once"
    assert behind == 0, f"{behind} triggers committed behind a later event of the same key"
