"""index.describe: how the router matches a subscription, as `evbus sub add/show` tell it."""

from __future__ import annotations

import pytest

from router.matching.filters import compile_filter
from router.matching.index import Entry, describe


def _describe(where: str | None) -> dict:
    return describe(Entry.build("t/s", "s", "t", "wf", ("a.b",), compile_filter(where) if where else None))


@pytest.mark.parametrize("where,kind,engine,anchors", [
    (None, "always", "none", []),
    ('event.department == "Finance"', "indexed", "index", ['event.department == "Finance"']),
    ('event.severity in ["critical", "major"]', "indexed", "index",
     ['event.severity == "critical"', 'event.severity == "major"']),
    ('event.priority >= 3 && event.site == "x"', "indexed", "index", ['event.site == "x"']),
    ('event.customer.startsWith("A") && has(event.owner)', "indexed", "index", ["has(event.owner)"]),
    ("event.ok == true || event.gone == null", "indexed", "index", ["event.ok == true", "event.gone == null"]),
    ("size(event.tags) > 1", "scan", "index", []),
    ("event.amount + 1 > 2", "scan", "cel", []),
    ('event.`content-type` == "x" && event.amount + 1 > 2', "indexed", "cel", ['event.`content-type` == "x"']),
    ("meta.source == 'crm' && event.n == 2.5", "indexed", "index", ['meta.source == "crm"']),  # one anchor of &&
    ("event.n == 2.5 || event.n == 3", "indexed", "index", ["event.n == 2.5", "event.n == 3"]),
    ('event.name == "Zoë"', "indexed", "index", ['event.name == "Zoë"']),
])
def test_each_kind_of_filter_is_described_as_the_index_files_it(where, kind, engine, anchors):
    got = _describe(where)
    assert (got["kind"], got["engine"], sorted(got["anchors"])) == (kind, engine, sorted(anchors)), got
    assert all(a in got["text"] for a in anchors)
    says_engine = "CEL engine" in got["text"]  # every filter the lookup alone does not decide says which way
    assert says_engine == (kind != "always" and not got["text"].endswith("nothing left to evaluate"))


def test_an_exact_filter_says_nothing_is_left_to_evaluate():
    assert _describe('event.department == "Finance"')["text"] == (
        'found by looking up event.department == "Finance": nothing left to evaluate')


def test_the_index_counts_its_subscriptions_by_kind_as_they_come_change_and_go():
    from prometheus_client import CollectorRegistry, generate_latest

    from router import metrics
    from router.matching.index import SubscriptionIndex

    def entry(name: str, where: str | None) -> Entry:
        return Entry.build(f"t/{name}", name, "t", "wf", ("a.b",), compile_filter(where) if where else None)

    index = SubscriptionIndex([entry("a", None), entry("b", 'event.x == "y"'), entry("c", "event.n + 1 > 2")])
    assert index.kinds == {("always", "none"): 1, ("indexed", "index"): 1, ("scan", "cel"): 1}
    index.put(entry("c", 'event.x == "z"'))  # changed: counted under its new kind only
    index.remove("t/a")
    index.remove("nobody")
    assert index.kinds == {("indexed", "index"): 2}
    registry = CollectorRegistry()
    exposed = metrics.SubscriptionKinds(registry)
    exposed.source = lambda: dict(index.kinds)
    text = generate_latest(registry).decode()
    assert 'evbus_router_subscriptions{engine="index",kind="indexed"} 2.0' in text, text
