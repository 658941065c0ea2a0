"""Subscription changes reach a running router within a second, while events flow, with no restart."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from router import Publisher, SubscriptionStore
from router.envelope import codec
from tests.harness import read_all

LIVE_WITHIN = 1.0


class Flow:
    """Publishes `tick.sent` with a sequence number every 20 ms until stopped."""

    def __init__(self, bus) -> None:
        self.pub = Publisher(bus)
        self.sent: list[tuple[int, datetime]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            self.pub.publish("tick.sent", {"seq": seq}, tenant="acme", key=str(seq))
            self.sent.append((seq, datetime.now(timezone.utc)))
            seq += 1
            self.pub.flush()
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.pub.flush()


def test_add_change_remove_take_effect_within_a_second(bus, start_router):
    store = SubscriptionStore(bus)
    store.put(name="other", tenant="acme", workflow="other", patterns=["nothing.here"])
    with Publisher(bus) as pub:  # the topic exists before the router starts: no discovery delay
        pub.publish("tick.sent", {"seq": -1}, tenant="acme")
    start_router()
    with Flow(bus) as flow:
        time.sleep(2.0)
        store.put(name="live", tenant="acme", workflow="live", patterns=["tick.*"])
        t_add = datetime.now(timezone.utc)
        time.sleep(2.0)
        store.put(name="live", tenant="acme", workflow="live", patterns=["tick.*"], filter="event.seq % 2 == 0")
        t_change = datetime.now(timezone.utc)
        time.sleep(2.0)
        store.delete("acme", "live")
        t_rm = datetime.now(timezone.utc)
        time.sleep(2.0)
    routed = {codec.decode_trigger(m.value())["event"].payload()["seq"]
              for m in read_all(bus, bus.trigger_topic("live"), timeout=30, idle=2.0)}

    def sent_between(a, b, delay=LIVE_WITHIN, margin=0.25):
        """Sent from `delay` after change a until `margin` before change b (routing takes a few ms, and an
        event sent just before b may be routed after b took effect)."""
        return [s for s, t in flow.sent
                if (t - a).total_seconds() >= delay and (b is None or (b - t).total_seconds() > margin)]

    # added: every event sent a second after the add and before the change is routed
    after_add = sent_between(t_add, t_change)
    assert after_add and set(after_add) <= routed, sorted(set(after_add) - routed)[:10]
    # changed: a second after the change, odd sequence numbers stop, even ones go on
    after_change = sent_between(t_change, t_rm)
    assert [s for s in after_change if s % 2 == 0 and s not in routed] == []
    assert [s for s in after_change if s % 2 == 1 and s in routed] == []
    # removed: nothing sent a second after the removal is routed
    after_rm = sent_between(t_rm, None)
    assert after_rm and not (set(after_rm) & routed)
    # and nothing sent before the add (the router keeps up: it routes within milliseconds)
    assert not {s for s, t in flow.sent if (t_add - t).total_seconds() > 0.25} & routed
