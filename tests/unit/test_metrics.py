"""metrics.observe_many against prometheus-client's own observe(): the same buckets, count and sum."""

from __future__ import annotations

from hypothesis import given, strategies as st
from prometheus_client import CollectorRegistry, Histogram

from router import metrics

BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)


def _samples(h: Histogram) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in h.collect() for s in metric.samples if not s.name.endswith("_created")}


@given(st.lists(st.one_of(st.sampled_from(BUCKETS), st.floats(0, 100), st.integers(0, 40).map(float)),
                max_size=300))
def test_observe_many_equals_observe_one_by_one(values):
    one, many = (Histogram("h", "h", buckets=BUCKETS, registry=CollectorRegistry()) for _ in range(2))
    for v in values:
        one.observe(v)
    metrics.observe_many(many, values)
    a, b = _samples(one), _samples(many)
    assert a.keys() == b.keys()
    for k in a:
        assert abs(a[k] - b[k]) <= 1e-9 * max(1.0, abs(a[k])), k


def test_observe_many_takes_the_plain_path_without_the_internals():
    class Plain:
        def __init__(self):
            self.seen = []

        def observe(self, v):
            self.seen.append(v)

    h = Plain()
    metrics.observe_many(h, [0.5, 2.0])
    assert h.seen == [0.5, 2.0]


def test_counts_by_labels_expose_like_a_counter():
    """The router's per-subscription counters: the same exposition lines as a prometheus-client Counter."""
    from prometheus_client import Counter, generate_latest

    registry, reference = CollectorRegistry(), CollectorRegistry()
    counts = metrics.CountsByLabels("m_total", "doc", ["tenant", "subscription"], registry=registry)
    counter = Counter("m_total", "doc", ["tenant", "subscription"], registry=reference)
    for labels, n in [(("acme", "a"), 1), (("acme", "b"), 2), (("acme", "a"), 3), (("globex", 'x"y\\z'), 1)]:
        counts.add(labels, n)
        counter.labels(*labels).inc(n)
    counts.add_many([(("acme", "b"), 1)])
    counter.labels("acme", "b").inc()
    ours = generate_latest(registry).decode().splitlines()
    theirs = [line for line in generate_latest(reference).decode().splitlines() if "_created" not in line]
    assert ours == theirs
    assert counts.value("acme", "a") == 4 and counts.value("nobody", "x") == 0
