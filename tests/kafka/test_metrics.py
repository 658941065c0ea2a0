"""The router exports Prometheus metrics on its port: consumed, routed, dead-lettered, matches per
subscription, filter errors, routing latency, transaction commits, subscriptions by how they are matched."""

from __future__ import annotations

import urllib.request

from router import Publisher, SubscriptionStore
from tests.harness import read_all, wait_until


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_router_metrics(bus, spawn):
    store = SubscriptionStore(bus)
    store.put(name="m", tenant="acme", workflow="metrics", patterns=["metric.*"], filter="event.v > 1")
    spawn("route", "--instance", "metrics", "--metrics-port", "19466", name="router", ready="routing events.*")
    with Publisher(bus) as pub:
        pub.publish("metric.seen", {"v": 2}, tenant="acme")
        pub.publish("metric.seen", {"v": 0}, tenant="acme")
        pub.publish("metric.seen", {"other": 1}, tenant="acme")  # filter error: missing field
    read_all(bus, bus.trigger_topic("metrics"), expect=1, timeout=30)
    topic = bus.events_topic("metric.seen")
    wait_until(lambda: f'evbus_router_events_consumed_total{{topic="{topic}"}} 3.0' in scrape(19466), 15,
               lambda: scrape(19466))
    text = scrape(19466)
    for line in ['evbus_router_triggers_routed_total{workflow="metrics"} 1.0',
                 'evbus_router_matches_total{subscription="m",tenant="acme"} 1.0',
                 'evbus_router_filter_errors_total{subscription="m",tenant="acme"} 1.0',
                 "evbus_router_routing_latency_seconds_count 3.0",
                 'evbus_router_subscriptions{engine="index",kind="scan"} 1.0']:  # `event.v > 1`: no anchor
        assert line in text, line
    assert 'evbus_router_transactions_total{outcome="commit"}' in text
    for phase in ("produce", "offsets", "commit"):
        count = next(line for line in text.splitlines()
                     if line.startswith(f'evbus_router_commit_seconds_count{{phase="{phase}"}}'))
        assert float(count.split()[-1]) >= 1, count
