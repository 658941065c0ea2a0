"""Filter semantics are CEL's as specified (cel-spec), on the payload as `event` and envelope as `meta`."""

import math
from datetime import datetime, timezone

import pytest

from router.errors import SubscriptionError
from router.matching.filters import FilterError, activation, compile_filter

EVENT = {
    "department": "Finance", "severity": "critical", "customer": "Acme", "count": 3, "ratio": 2.0,
    "user": {"name": "Alice", "address": {"city": "Oslo"}, "groups": ["admins", "finance"]},
    "content-type": "application/json", "nothing": None, "tags": ["vip", "new"], "nan": math.nan,
}
META = {"type": "user.provisioned", "tenant": "acme", "source": "workflow/provisioning", "id": "e-1",
        "time": datetime(2026, 1, 2, tzinfo=timezone.utc), "specversion": "1.0",
        "datacontenttype": "application/json", "subject": None, "correlationid": "e-1", "causationid": None}


def run(text, event=EVENT, meta=META):
    return compile_filter(text)(activation(event, meta))


@pytest.mark.parametrize("text,expected", [
    # the seed's filters, verbatim
    ('event.department == "Finance"', True),
    ('event.severity == "critical"', True),
    ('event.customer == "Acme"', True),
    # nested fields
    ('event.user.address.city == "Oslo"', True),
    ('event.user.name == "Bob"', False),
    # in
    ('"finance" in event.user.groups', True),
    ('event.department in ["Finance", "HR"]', True),
    ('event.department in ["HR"]', False),
    # has()
    ('has(event.user.address)', True),
    ('has(event.user.phone)', False),
    ('has(event.missing) && event.missing == 1', False),
    # string functions, core and the strings extension
    ('event.customer.startsWith("Ac")', True),
    ('event.customer.endsWith("me")', True),
    ('event.customer.contains("cm")', True),
    ('event.customer.matches("^A.*e$")', True),
    ('event.department.lowerAscii() == "finance"', True),
    ('size(event.tags) == 2', True),
    # int vs double: numeric comparison across types, as the spec says
    ('event.count == 3.0', True),
    ('event.ratio == 2', True),
    ('event.count < 3.5', True),
    ('event.ratio > 1', True),
    # comparing values of different kinds is false, not an error
    ('event.department == 1', False),
    ('event.count == "3"', False),
    ('event.nothing == null', True),
    ('event.count != null', True),
    # NaN is not equal to itself
    ('event.nan == event.nan', False),
    # backtick-quoted field names for JSON keys that are not identifiers
    ('event.`content-type` == "application/json"', True),
    # the envelope
    ('meta.type == "user.provisioned" && meta.tenant == "acme"', True),
    ('meta.source.startsWith("workflow/")', True),
    ('meta.time > timestamp("2026-01-01T00:00:00Z")', True),
    # short-circuit absorbs an error on the other side
    ('event.missing == 1 || true', True),
    ('false && event.missing == 1', False),
])
def test_filter_semantics(text, expected):
    assert run(text) is expected


@pytest.mark.parametrize("text", [
    'event.missing == 1',            # a missing field
    'event.user.missing.deeper == 1',
    'event.department > 3',          # no ordering between string and int
    'event.department + 1 == 2',
    'event.count',                   # not a bool at run time
])
def test_runtime_failures_raise_filter_error(text):
    with pytest.raises(FilterError):
        run(text)


@pytest.mark.parametrize("text,fragment,column", [
    ('event.department ==', "Syntax error", 20),
    ('event.department == "Finance" &&\n  bogus == 1', "undeclared reference to 'bogus'", 36),
    ('foo.department == "x"', "undeclared reference to 'foo.department'", 4),
    ('meta.tpye == "user.provisioned"', "undeclared reference to 'meta.tpye'", 5),
    ('event.count + 1', "not bool", 1),
    ('"text"', "not bool", 1),
    ('', "empty", None),
    ('event.x == "' + "a" * 5000 + '"', "at most", None),
])
def test_bad_filters_name_problem_and_column(text, fragment, column):
    with pytest.raises(SubscriptionError) as err:
        compile_filter(text)
    assert err.value.field == "filter"
    assert fragment in str(err.value)
    assert err.value.position == column
