"""Differential property tests: the index and the predicate evaluator against the CEL engine evaluating
every filter, on random subscriptions and events full of CEL's traps (missing fields, int vs double,
string vs number, null, bool vs int, nested maps and lists)."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from router.errors import SubscriptionError
from router.matching import predicates as pr
from router.matching.filters import FilterError, activation, compile_filter
from router.matching.index import Entry, SubscriptionIndex
from router.matching.patterns import matches

EVENT_PATHS = ["event.a", "event.a", "event.x.y", "event.`content-type`", 'event["a"]', "event.l", "event.l[0]"]
META_PATHS = ["meta.type", "meta.source"]
STRINGS = ["a", "b", "Finance", "", "ab"]
scalar_json = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5, -1.0, 3.0]),
                        st.sampled_from(STRINGS), st.sampled_from([2**53 + 1, 2**63 - 1]))
json_value = st.recursive(scalar_json, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.sampled_from(["y", "z", "w", "a"]), kids, max_size=3)),
    max_leaves=6)
payload = st.one_of(
    st.fixed_dictionaries({}, optional={k: json_value for k in ["a", "x", "content-type", "l"]}),
    json_value)


def lit_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    return repr(v)


lit = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5, 3.0]),
                st.sampled_from(STRINGS), st.just(2**53)).map(lit_text)
num = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 1.0, 2.0, -1.5])).map(repr)
epath = st.sampled_from(EVENT_PATHS)
select_path = st.sampled_from([p for p in EVENT_PATHS if "[" not in p])
mpath = st.sampled_from(META_PATHS)
mlit = st.sampled_from(["user.created", "a.b", "src"]).map(lambda s: f'"{s}"')

leaf = st.one_of(
    st.builds(lambda p, v: f"{p} == {v}", epath, lit),
    st.builds(lambda p, v: f"{v} == {p}", epath, lit),
    st.builds(lambda p, v: f"{p} != {v}", epath, lit),
    st.builds(lambda p, vs: f"{p} in [{', '.join(vs)}]", epath, st.lists(lit, max_size=3)),
    st.builds(lambda p, op, n: f"{p} {op} {n}", epath, st.sampled_from(["<", "<=", ">", ">="]), num),
    st.builds(lambda p, op, n: f"{n} {op} {p}", epath, st.sampled_from(["<", ">="]), num),
    st.builds(lambda p: f"has({p})", select_path),
    st.builds(lambda p, fn, s: f'{p}.{fn}("{s}")', epath, st.sampled_from(["startsWith", "endsWith", "contains"]),
              st.sampled_from(STRINGS)),
    st.builds(lambda p, v: f"{v} in {p}", epath, lit),
    epath,  # a bare field used as a bool
    st.builds(lambda p, v: f"{p} == {v}", mpath, mlit),
    st.builds(lambda p, s: f'{p}.startsWith("{s}")', mpath, st.sampled_from(["user", "a"])),
    st.builds(lambda p, r: f'{p}.matches("{r}")', epath, st.sampled_from(["^a", "b$", "a|b", "^[ab]+$", "^$", "é"])),
    st.builds(lambda p, op, n: f"size({p}) {op} {n}", epath, st.sampled_from(["<", ">", "==", "!="]), num),
    st.builds(lambda p, n: f"{n} < {p}.size()", epath, num),
    # opaque to the analyser: the CEL engine decides
    st.builds(lambda p: f"{p} + 1 == 2", epath),
    st.builds(lambda p: f"({p} == 1 ? true : false)", epath),
    st.builds(lambda p: f"[1, 2].exists(x, x == {p})", epath),
    st.sampled_from(["true", "false"]),
)
filters = st.recursive(leaf, lambda kids: st.one_of(
    st.builds(lambda a, b: f"({a}) && ({b})", kids, kids),
    st.builds(lambda a, b: f"({a}) || ({b})", kids, kids),
    st.builds(lambda a: f"!({a})", kids)), max_leaves=5)


def compiled(text):
    try:
        return compile_filter(text)
    except SubscriptionError:
        assume(False)


def cel(f, event, meta):
    try:
        return f(activation(event, meta))
    except FilterError:
        return pr.ERROR


def meta_for(event_type="user.created"):
    return {"id": "1", "source": "src", "type": event_type, "tenant": "acme", "specversion": "1.0",
            "datacontenttype": "application/json", "time": None, "subject": None, "correlationid": "1",
            "causationid": None}


def _meta():
    m = meta_for()
    from datetime import datetime, timezone
    m["time"] = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return m


META = _meta()


TRAPS = [  # the places where a hand-written evaluator goes wrong
    ("event.a == 1", {"a": True}), ("event.a == true", {"a": 1}), ("event.a == 1", {"a": 1.0}),
    ("event.a == 2.5", {"a": "2.5"}), ("event.a == null", {}), ("event.a == null", {"a": None}),
    ("event.a != 1", {"a": "1"}), ("event.a != 1", {}), ("1 in event.a", {"a": {"1": 1}}),
    ('"a" in event.a', {"a": {"a": 1}}), ('"a" in event.a', {"a": "abc"}), ("1 in event.a", {"a": [1.0]}),
    ("event.a < 1", {"a": True}), ("event.a < 1", {"a": "0"}), ("event.a < 1", {"a": None}),
    ("event.a >= 1", {"a": 2**63 - 1}), ("event.a == 9007199254740992", {"a": 2**53 + 1}),
    ("event.x.y == 1", {"x": "str"}), ("event.x.y == 1", {"x": [1]}), ("has(event.x.y)", {"x": None}),
    ("has(event.x.y)", {"x": "s"}), ("has(event.x.y)", {}), ("has(event.a)", [1]), ("event.l[0] == 1", {"l": []}),
    ("event.l[0] == 1", {"l": {"0": 1}}), ("event.a", {"a": 1}), ("!event.a", {"a": None}),
    ("event.a.startsWith(\"a\")", {"a": 1}), ("event.a || true", {}), ("event.a && false", {"a": "x"}),
    ("!(event.a == 1) || event.a == 2", {}), ("event.a in []", {}), ("event.a in [1, \"a\"]", {"a": "a"}),
    ("size(event.a) == 2", {"a": "é!"}), ("size(event.a) > 0", {"a": 1}), ("size(event.a) == 2.0", {"a": [1, 2]}),
    ("event.a.matches(\"^a\")", {"a": ["a"]}), ("event.a.matches(\"é\")", {"a": "café"}),
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(filters, payload)
def test_captured_filters_decide_exactly_as_cel(text, event):
    f = compiled(text)
    tree = pr.analyse(text)
    assume(pr.captured(tree))
    assert pr.evaluate(tree, event, META) is cel(f, event, META), (text, event)
    assert pr.compile_tree(tree)(event, META) is pr.evaluate(tree, event, META)


for _text, _event in TRAPS:
    test_captured_filters_decide_exactly_as_cel = example(_text, _event)(test_captured_filters_decide_exactly_as_cel)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(filters, payload)
def test_anchors_are_necessary_conditions(text, event):
    """Whenever CEL says true, one of the filter's anchors holds: the index never misses a match."""
    f = compiled(text)
    anchors = pr.anchors(pr.analyse(text))
    if anchors is None or cel(f, event, META) is not True:
        return
    held = []
    for path, k in anchors:
        if k is pr.HAS:
            held.append(pr.has_path(path, event) is True)
        else:
            v = pr.resolve(path, event, META)
            held.append(v is not pr.ERROR and pr.key(v) == k)
    assert any(held), (text, event, anchors)


TENANTS = ["acme", "globex"]
PATTERNS = ["user.created", "user.*", "user.**", "*.created", "order.*", "**"]
TYPES = ["user.created", "user.deleted", "user.a.b", "order.created", "users.created"]
subscription = st.tuples(st.sampled_from(TENANTS), st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2),
                         st.one_of(st.none(), filters))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.lists(subscription, min_size=1, max_size=12), st.lists(
    st.tuples(st.sampled_from(TENANTS), st.sampled_from(TYPES), payload), min_size=1, max_size=5),
    st.data())
def test_index_matches_equal_evaluate_every_filter(subs, events, data):
    entries, programs = [], {}
    for i, (tenant, patterns, text) in enumerate(subs):
        f = compiled(text) if text is not None else None
        entries.append(Entry.build(f"{tenant}/s{i}", f"s{i}", tenant, "wf", tuple(dict.fromkeys(patterns)), f))
        programs[entries[-1].key] = f
    late = data.draw(st.integers(0, len(entries)), label="subscriptions added after the first matches")
    index = SubscriptionIndex(entries[:len(entries) - late])
    for tenant, etype, event in events:  # fills the per-(tenant, type) plans that changes must invalidate
        index.match(tenant, etype, lambda: event, lambda: _meta() | {"type": etype, "tenant": tenant})
    for e in entries[len(entries) - late:]:
        index.put(e)
    # incremental updates: remove some for good, remove others and put them back
    removed = set()
    for e in data.draw(st.lists(st.sampled_from(entries), max_size=3)):
        index.remove(e.key)
        if data.draw(st.booleans(), label="put back"):
            index.put(e)
            removed.discard(e.key)
        else:
            removed.add(e.key)
    entries = [e for e in entries if e.key not in removed]
    for tenant, etype, event in events:
        meta = _meta() | {"type": etype, "tenant": tenant}
        result = index.match(tenant, etype, lambda: event, lambda: meta)
        want, errors = set(), set()
        for e in entries:
            if e.tenant != tenant or not any(matches(p, etype) for p in e.patterns):
                continue
            f = programs[e.key]
            outcome = True if f is None else cel(f, event, meta)
            if outcome is True:
                want.add(e.key)
            elif outcome is pr.ERROR:
                errors.add(e.key)
        assert {e.key for e in result.matched} == want, (etype, event)
        assert len(result.matched) == len(want)  # a subscription in two merged buckets matches once
        assert {e.key for e, _ in result.errors} <= errors


def test_index_matches_on_anchors_alone_and_follows_changes():
    """Filters that are their own anchor (equality, `in`, a bare bool) match through the lookup, with no
    evaluation; a change to a tenant's subscriptions is seen by the next match (cached plans dropped)."""
    def entry(name, text, patterns=("user.*",), tenant="acme"):
        return Entry.build(f"{tenant}/{name}", name, tenant, "wf", patterns, compiled(text) if text else None)
    index = SubscriptionIndex([entry("eq", 'event.dept == "Finance"'), entry("in", 'event.sev in ["a", 1]'),
                               entry("flag", "event.vip"), entry("all", None),
                               entry("other", 'event.dept == "Finance"', tenant="globex")])
    assert all(e.exact for e in index._entries.values() if e.filtered)

    def keys(event, etype="user.created", tenant="acme"):
        meta = _meta() | {"type": etype, "tenant": tenant}
        return [e.key for e in index.match(tenant, etype, lambda: event, lambda: meta).matched]

    assert keys({"dept": "Finance", "sev": 1.0, "vip": True}) == ["acme/all", "acme/eq", "acme/flag", "acme/in"]
    assert keys({"dept": "HR", "sev": "b", "vip": 1}) == ["acme/all"]  # 1 is not true in CEL
    assert keys({"dept": "Finance"}, etype="ticket.closed") == []
    index.put(entry("late", 'event.dept == "HR"'))
    assert keys({"dept": "HR"}) == ["acme/all", "acme/late"]
    index.remove("acme/all")
    index.put(entry("eq", 'event.dept == "Sales"'))  # changed filter
    assert keys({"dept": "HR", "sev": "b"}) == ["acme/late"]
    assert keys({"dept": "Finance"}) == []
    assert keys({"dept": "Finance"}, tenant="globex") == ["globex/other"]


REGEX_PARTS = ["a", "b", "é", ".", "*", "+", "?", "^", "$", "[a-b]", "\\d", "\\b", "(", ")", "|", "(?i)", "{1,2}"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(REGEX_PARTS), max_size=6).map("".join),
       st.text(alphabet="abAé1 \n", max_size=8))
def test_regex_fast_path_agrees_with_the_re2_wrapper(pattern, text):
    """`matches()` calls RE2's compiled program directly over UTF-8 bytes; the wrapper over text is the
    reference (and the fallback when the binding's internals are not there)."""
    import re2
    try:
        want = re2.compile(pattern).search(text) is not None
    except re2.error:
        return
    fast = pr.Utf8Regex(pattern)
    assert fast._match is not None  # the pinned google-re2 has it: the fast path is what runs
    slow = pr.Utf8Regex(pattern)
    slow._match = None
    assert fast.search(text) == want == slow.search(text)


def test_a_merged_plan_changes_no_bucket_and_follows_a_change():
    def entry(name, text, patterns):
        return Entry.build(f"acme/{name}", name, "acme", "wf", patterns, compiled(text) if text else None)
    index = SubscriptionIndex([entry("a", 'event.dept == "Finance" && event.n > 1', ("user.*",)),
                               entry("b", 'event.dept == "HR" && event.n > 1', ("**",)),
                               entry("c", 'has(event.x) && event.n > 1', ("user.*", "**")),
                               entry("d", None, ("**",))])
    buckets = index.buckets("acme", "user.created")

    def contents():
        return [(dict(b.always), dict(b.scan), {p: dict(d) for p, d in b.has.items()},
                 {p: {k: dict(v) for k, v in t.items()} for p, (_, t) in b.eq.items()}) for b in buckets]
    before = contents()
    plan = index.plan("acme", "user.created")
    assert len(buckets) == 2 and plan not in buckets
    assert set(plan.eq[("event", "dept")][1]) == {"Finance", "HR"}
    assert contents() == before
    meta = _meta()

    def keys():
        event = {"dept": "HR", "n": 2, "x": 1}
        return sorted(e.key for e in index.match("acme", "user.created", lambda: event, lambda: meta).matched)
    assert keys() == ["acme/b", "acme/c", "acme/d"]
    index.remove("acme/d")  # the tenant's plans are dropped with any change to its subscriptions
    assert keys() == ["acme/b", "acme/c"]
