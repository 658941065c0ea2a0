"""Patterns, filters and tenant scope through the real router: every trigger that should exist does,
and nothing else. The expected set is computed from the subscriptions with the reference matcher."""

from __future__ import annotations

from router import Publisher, SubscriptionStore
from router.envelope import codec
from router.matching.patterns import matches
from tests.harness import read_all

SUBS = [  # name, tenant, patterns, filter, which event labels must match
    ("exact", "acme", ["user.provisioned"], None),
    ("one-seg", "acme", ["user.*"], None),
    ("any-depth", "acme", ["user.**"], None),
    ("leading", "acme", ["*.failed"], None),
    ("nested", "acme", ["user.**"], 'event.profile.address.city == "Oslo"'),
    ("in-list", "acme", ["user.*"], 'event.department in ["Finance", "Legal"]'),
    ("has-field", "acme", ["**"], "has(event.manager)"),
    ("string-fn", "acme", ["user.*"], 'event.email.endsWith("@acme.test") && event.name.lowerAscii() == "alice"'),
    ("int-double", "acme", ["job.*"], "event.retries >= 2.5 && event.score == 3"),
    ("missing", "acme", ["job.*"], 'event.nonexistent == "x"'),
    ("finance-acme", "acme", ["user.provisioned"], 'event.department == "Finance"'),
    ("finance-globex", "globex", ["user.provisioned"], 'event.department == "Finance"'),
]
EVENTS = [  # label, tenant, type, payload
    ("alice", "acme", "user.provisioned", {"name": "Alice", "email": "alice@acme.test", "department": "Finance",
                                           "profile": {"address": {"city": "Oslo"}}, "manager": "m"}),
    ("bob", "acme", "user.deprovisioned", {"name": "Bob", "email": "bob@x.test", "department": "Legal"}),
    ("deep", "acme", "user.role.granted", {"name": "Carol", "profile": {"address": {"city": "Oslo"}}}),
    ("job", "acme", "job.failed", {"retries": 3, "score": 3.0}),
    ("job-low", "acme", "job.failed", {"retries": 2, "score": 3}),
    ("backup", "acme", "backup.failed", {"manager": None}),
    ("nested-fail", "acme", "backup.job.failed", {}),
    ("users-domain", "acme", "users.provisioned", {"department": "Finance"}),
    ("globex-fin", "globex", "user.provisioned", {"name": "Gina", "department": "Finance"}),
]
EXPECTED = {
    ("alice", "exact"), ("alice", "one-seg"), ("alice", "any-depth"), ("alice", "nested"), ("alice", "in-list"),
    ("alice", "has-field"), ("alice", "string-fn"), ("alice", "finance-acme"),
    ("bob", "one-seg"), ("bob", "any-depth"), ("bob", "in-list"),
    ("deep", "any-depth"), ("deep", "nested"),
    ("job", "leading"), ("job", "int-double"),
    ("job-low", "leading"),
    ("backup", "leading"), ("backup", "has-field"),
    ("globex-fin", "finance-globex"),
}


def test_patterns_filters_and_tenant_scope(bus, start_router):
    store = SubscriptionStore(bus)
    for name, tenant, patterns, where in SUBS:
        store.put(name=name, tenant=tenant, workflow=f"wf-{name}", patterns=patterns, filter=where)
    # the pattern half of the expectation agrees with the reference matcher
    for label, tenant, etype, _ in EVENTS:
        for name, stenant, patterns, where in SUBS:
            if (label, name) in EXPECTED:
                assert stenant == tenant and any(matches(p, etype) for p in patterns), (label, name)
    start_router()
    labels = {}
    with Publisher(bus) as pub:
        for label, tenant, etype, data in EVENTS:
            labels[pub.publish(etype, data, tenant=tenant)] = label
    got = set()
    for name, *_ in SUBS:
        want = sum(1 for pair in EXPECTED if pair[1] == name)
        for msg in read_all(bus, bus.trigger_topic(f"wf-{name}"), expect=want, timeout=30, idle=0.5):
            trigger = codec.decode_trigger(msg.value())
            got.add((labels[trigger["event"].id], trigger["subscription"]))
    assert got == EXPECTED
    assert not any(pair[1] == "finance-acme" and pair[0] == "globex-fin" for pair in got)


def test_a_new_domain_is_routed_without_restart(bus, start_router):
    SubscriptionStore(bus).put(name="paid", tenant="acme", workflow="invoices", patterns=["invoice.paid"])
    start_router()
    with Publisher(bus) as pub:  # creates events.invoice after the router started
        event_id = pub.publish("invoice.paid", {"amount": 10}, tenant="acme")
    msgs = read_all(bus, bus.trigger_topic("invoices"), expect=1, timeout=45)
    assert [codec.decode_trigger(m.value())["event"].id for m in msgs] == [event_id]


def test_clients_close_after_delivering_what_they_hold(bus):
    """`Publisher.close()` and `SubscriptionStore.close()` let their producers go once what they hold is
    delivered (the demo closes them before it stops its broker)."""
    store = SubscriptionStore(bus)
    store.put(name="closing", tenant="acme", workflow="wf-closing", patterns=["user.*"])
    store.close()
    pub = Publisher(bus)
    ids = [pub.publish("user.created", {"n": i}, tenant="acme") for i in range(50)]
    pub.close()  # no flush before it: close() flushes
    got = [codec.decode_event(m.value()).id for m in read_all(bus, bus.events_topic("user.created"), expect=50)]
    assert sorted(got) == sorted(ids)
    assert SubscriptionStore(bus).get("acme", "closing") is not None
