"""CEL filters over an event: the payload as `event`, the envelope as `meta`.

The engine is cel-expr-python, Google's C++ CEL behind a Python binding: it follows the CEL spec where
cel-python departs from it (comparisons across types, NaN, backtick-quoted field names) and evaluates a
three-clause filter ~8x faster than cel-python's compiled runner on this machine (docs/benchmarks.md).
The strings extension gives lowerAscii(), upperAscii(), replace(), split() and friends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext.ext_strings import ExtStrings

from ..errors import SubscriptionError

MAX_FILTER_CHARS = 4096
# `meta.*` are declared one by one (CEL resolves qualified names), so a typo such as `meta.tpye` is a
# compile error, and `meta.time` is a real timestamp (the binding cannot nest one inside a map).
META_TYPES = {
    "id": cel.Type.STRING, "source": cel.Type.STRING, "type": cel.Type.STRING, "tenant": cel.Type.STRING,
    "specversion": cel.Type.STRING, "datacontenttype": cel.Type.STRING, "time": cel.Type.TIMESTAMP,
    "subject": cel.Type.DYN, "correlationid": cel.Type.DYN, "causationid": cel.Type.DYN,
}
_ENV = cel.NewEnv(
    variables={"event": cel.Type.DYN, **{f"meta.{k}": t for k, t in META_TYPES.items()}},
    extensions=[ExtStrings()],
)
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


class FilterError(Exception):
    """A filter that could not decide for one event: a missing field, a wrong type, a non-bool result."""


@dataclass(frozen=True, slots=True)
class Filter:
    text: str
    program: Any

    def __call__(self, activation: Any) -> bool:
        try:
            result = self.program.eval(activation)
        except RuntimeError as exc:  # the engine's own limits, e.g. its comprehension iteration budget
            raise FilterError(f"evaluation stopped by the CEL engine: {exc}") from None
        value = result.value()
        if value is True or value is False:
            return value
        if result.type() == cel.Type.ERROR:
            raise FilterError(str(value))
        raise FilterError(f"filter returned {result.type().name()}, not bool")


def _compile_error(text: str, exc: Exception) -> SubscriptionError:
    message = str(exc)
    found = _POSITION.search(message)
    if not found:
        return SubscriptionError(message, field="filter")
    line, column, what = int(found.group(1)), int(found.group(2)), found.group(3)
    if line > 1:  # report a column in the whole text, counting earlier lines
        column += sum(len(x) + 1 for x in text.split("\n")[: line - 1])
    return SubscriptionError(what.strip(), field="filter", position=column)


_COMPILED: dict[str, Filter] = {}
_COMPILED_MAX = 4096  # a cache, not a registry: the index keeps what it needs


def compile_filter(text: str) -> Filter:
    """Compile and type-check a filter, or SubscriptionError naming the problem and its column.
    Identical filters (common across tenants) share one compiled program."""
    cached = _COMPILED.get(text) if isinstance(text, str) else None
    if cached is not None:
        return cached
    if not isinstance(text, str) or not text.strip():
        raise SubscriptionError("filter is empty; leave it out to match every event", field="filter")
    if len(text) > MAX_FILTER_CHARS:
        raise SubscriptionError(f"filter is {len(text)} characters; at most {MAX_FILTER_CHARS}", field="filter")
    try:
        program = _ENV.compile(text)
    except Exception as exc:  # the binding raises RuntimeError with the checker's message
        raise _compile_error(text, exc) from None
    kind = program.return_type()
    if kind != cel.Type.BOOL and kind != cel.Type.DYN:
        raise SubscriptionError(f"filter yields {kind.name()}, not bool", field="filter", position=1)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    compiled = _COMPILED[text] = Filter(text, program)
    return compiled


def activation(payload: Any, meta: dict[str, Any]) -> Any:
    """Bind one event once; every candidate filter for that event evaluates against it."""
    data = {f"meta.{k}": v for k, v in meta.items()}
    data["event"] = payload
    return _ENV.Activation(data=data)
