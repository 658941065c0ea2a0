"""Prometheus metrics of the router and the runner, in one place."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_CONSUMED = Counter("evbus_router_events_consumed_total", "Records read from events.* topics", ["topic"])
TRIGGERS_ROUTED = Counter("evbus_router_triggers_routed_total", "Trigger records produced", ["workflow"])
DEAD_LETTERS = Counter("evbus_router_dead_letters_total", "Records sent to the dead-letter topic", ["reason"])
MATCHES = Counter("evbus_router_matches_total", "Events matched per subscription", ["tenant", "subscription"])
FILTER_ERRORS = Counter("evbus_router_filter_errors_total",
                        "Filter evaluations that failed (counted as no match)", ["tenant", "subscription"])
ROUTING_LATENCY = Histogram("evbus_router_routing_latency_seconds",
                            "From the event's time to its triggers being produced",
                            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
COMMIT_SECONDS = Histogram("evbus_router_commit_seconds",
                           "A transaction's commit by phase: produce (hand over and flush its records), "
                           "offsets (send the consumer positions), commit", ["phase"],
                           buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
TRANSACTIONS = Counter("evbus_router_transactions_total", "Kafka transactions by outcome", ["outcome"])

TRIGGERS_HANDLED = Counter("evbus_runner_triggers_handled_total", "Handler calls by outcome",
                           ["workflow", "outcome"])
HANDLER_SECONDS = Histogram("evbus_runner_handler_seconds", "Handler call duration", ["workflow"])
IN_FLIGHT = Gauge("evbus_runner_in_flight", "Handler calls running", ["workflow"])
HELD = Gauge("evbus_runner_held", "Triggers held because their subscription is paused", ["workflow"])
RETRYING = Gauge("evbus_runner_retrying", "Triggers waiting for a retry", ["workflow"])


def serve(port: int | None) -> None:
    """Expose /metrics on loopback; port 0 or None turns it off."""
    if port:
        start_http_server(port, addr="127.0.0.1")
