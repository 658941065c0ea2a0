import pytest
from hypothesis import given, strategies as st

from router.errors import SubscriptionError
from router.matching.patterns import PatternTrie, matches, parse

TABLE = [
    # pattern, type, matches?
    ("user.provisioned", "user.provisioned", True),
    ("user.provisioned", "user.deprovisioned", False),
    ("user.provisioned", "user.provisioned.extra", False),
    ("user.*", "user.created", True),
    ("user.*", "user.a.b", False),
    ("user.*", "user", False),
    ("user.**", "user.created", True),
    ("user.**", "user.a.b.c", True),
    ("user.**", "user", False),
    ("*.failed", "job.failed", True),
    ("*.failed", "backup.failed", True),
    ("*.failed", "backup.job.failed", False),
    ("**.failed", "backup.job.failed", True),
    ("*.*", "ticket.closed", True),
    ("ticket.*.closed", "ticket.x.closed", True),
    ("ticket.**.closed", "ticket.a.b.closed", True),
    ("ticket.**.closed", "ticket.closed", False),
    # no match across domains: a prefix of a segment is not the segment
    ("user.*", "users.created", False),
    ("user.**", "username.created", False),
    ("job.failed", "backup.failed", False),
]


@pytest.mark.parametrize("pattern,event_type,expected", TABLE)
def test_pattern_semantics(pattern, event_type, expected):
    assert matches(pattern, event_type) is expected
    trie = PatternTrie()
    trie.add(pattern, "s")
    assert (trie.match(event_type) == {"s"}) is expected


@pytest.mark.parametrize("bad,column", [
    ("", None), ("User.created", 1), ("user..created", 6), ("user.*x", 6), ("user.", 6), ("a.***", 3),
    ("user created", 1),
])
def test_bad_patterns_name_the_segment_and_column(bad, column):
    with pytest.raises(SubscriptionError) as err:
        parse(bad)
    assert err.value.field == "pattern"
    assert err.value.position == column


segment = st.sampled_from(["a", "b", "c"])
pattern_seg = st.sampled_from(["a", "b", "c", "*", "**"])


@given(st.lists(st.lists(pattern_seg, min_size=1, max_size=4).map(".".join), min_size=1, max_size=12),
       st.lists(segment, min_size=1, max_size=5).map(".".join))
def test_trie_agrees_with_one_by_one_matching(patterns, event_type):
    trie = PatternTrie()
    for i, p in enumerate(patterns):
        trie.add(p, i)
    assert trie.match(event_type) == {i for i, p in enumerate(patterns) if matches(p, event_type)}


@given(st.lists(st.lists(pattern_seg, min_size=1, max_size=3).map(".".join), min_size=2, max_size=8),
       st.lists(segment, min_size=1, max_size=4).map(".".join))
def test_trie_removal_leaves_the_rest(patterns, event_type):
    trie = PatternTrie()
    for i, p in enumerate(patterns):
        trie.add(p, i)
    for i, p in enumerate(patterns):
        if i % 2:
            trie.remove(p, i)
    assert trie.match(event_type) == {i for i, p in enumerate(patterns) if i % 2 == 0 and matches(p, event_type)}
    assert len(trie) == len([i for i in range(len(patterns)) if i % 2 == 0])
