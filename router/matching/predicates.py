"""A filter as a tree of predicates over single fields, evaluated with CEL's three-valued logic.

`analyse(text)` turns a filter into `And`/`Or`/`Not` over `Pred` leaves (`event.a.b == "x"`, `in [..]`,
numeric ranges, `has()`, `startsWith()`/`endsWith()`/`contains()`, `matches()` (RE2, as CEL itself uses:
linear time, no catastrophic backtracking), `size()` compared with a number, `"x" in event.list`, a bare
boolean field) and `Opaque` for everything else. A tree with no `Opaque` is *captured*: `evaluate()` gives CEL's
answer (True, False or ERROR) without the CEL engine. `anchors()` gives conditions of which at least one
must hold for the filter to be true: the index files the subscription under them.

Semantics follow cel-spec on JSON values: heterogeneous equality (`1 == 1.0`, `"1" != 1`, `true != 1`),
ordering only between numbers (anything else is an error), a missing field is an error, `&&`/`||` are
commutative and absorb an error when the other side decides.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import re2

from . import celparse as p

ERROR = object()  # CEL's error value: a missing field, no matching overload
Path = tuple[Any, ...]  # ("event", "a", 0, "b") or ("meta", "type")


@dataclass(frozen=True)
class Pred:
    kind: str  # eq ne in cmp has str contains truthy
    path: Path
    arg: Any = None
    op: str = ""


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    items: tuple


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class Opaque:
    pass


OPAQUE = Opaque()
SCALARS = ("int", "uint", "double", "string", "bool", "null")
FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _path(node: Any) -> Path | None:
    steps: list[Any] = []
    while True:
        if isinstance(node, p.Select):
            steps.append(node.field)
            node = node.operand
        elif isinstance(node, p.Index) and isinstance(node.index, p.Lit) and node.index.kind in ("string", "int"):
            steps.append(node.index.value)
            node = node.operand
        elif isinstance(node, p.Ident):
            if node.name == "event":
                return ("event", *reversed(steps))
            if node.name == "meta" and len(steps) == 1:
                return ("meta", steps[0])
            return None
        else:
            return None


def _scalar(node: Any) -> p.Lit | None:
    return node if isinstance(node, p.Lit) and node.kind in SCALARS else None


def _size_of(node: Any) -> Path | None:
    """The path in `size(path)` or `path.size()`."""
    if isinstance(node, p.Call) and node.function == "size":
        arg = node.target if node.target is not None and not node.args else (
            node.args[0] if node.target is None and len(node.args) == 1 else None)
        return _path(arg) if arg is not None else None
    return None


def _compare(fn: str, left: Any, right: Any) -> Any:
    op = fn[1:-1]
    lsize, rsize = _size_of(left), _size_of(right)
    if lsize is not None or rsize is not None:
        path, lit = (lsize, _scalar(right)) if lsize is not None else (rsize, _scalar(left))
        op = op if lsize is not None else FLIP.get(op, op)
        if path is None or lit is None or lit.kind not in ("int", "uint", "double"):
            return OPAQUE
        return Pred("size", path, lit.value, op)
    lpath, rpath, llit, rlit = _path(left), _path(right), _scalar(left), _scalar(right)
    if lpath is None and rpath is not None:
        lpath, rlit, op = rpath, llit, FLIP.get(op, op)
    if lpath is None or rlit is None:
        return OPAQUE
    if op == "==":
        return Pred("eq", lpath, rlit.value)
    if op == "!=":
        return Not(Pred("eq", lpath, rlit.value))
    if rlit.kind in ("int", "uint", "double"):
        return Pred("cmp", lpath, rlit.value, op)
    return OPAQUE


def _convert(node: Any) -> Any:
    if isinstance(node, p.Lit) and node.kind == "bool":
        return Const(node.value)
    if not isinstance(node, p.Call):
        path = _path(node)
        return Pred("truthy", path) if path is not None else OPAQUE
    fn, args = node.function, node.args
    if fn == "_&&_":
        return And(tuple(_convert(a) for a in args))
    if fn == "_||_":
        return Or(tuple(_convert(a) for a in args))
    if fn == "!_":
        return Not(_convert(args[0]))
    if fn in ("_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_"):
        return _compare(fn, *args)
    if fn == "@in":
        return _in(*args)
    if fn == "has" and node.target is None and len(args) == 1 and isinstance(args[0], p.Select):
        path = _path(args[0])
        return Pred("has", path) if path is not None and path[0] == "event" else OPAQUE
    if fn in ("startsWith", "endsWith", "contains") and node.target is not None and len(args) == 1:
        path, lit = _path(node.target), args[0]
        if path is not None and isinstance(lit, p.Lit) and lit.kind == "string":
            return Pred("str", path, lit.value, fn)
    if fn == "matches" and len(args) == (1 if node.target is not None else 2):
        target, lit = (node.target, args[0]) if node.target is not None else args
        path = _path(target)
        if path is not None and isinstance(lit, p.Lit) and lit.kind == "string":
            try:
                return Pred("matches", path, _regex(lit.value))
            except re2.error:
                return OPAQUE  # the engine reports it, as CEL does
    return OPAQUE


_REGEXES: dict[str, Any] = {}


class Utf8Regex:
    """An RE2 pattern searched over UTF-8 bytes: the same answers as over text (RE2 reads UTF-8 either
    way), without the wrapper's per-call character-offset bookkeeping (5.2 → 1.5 µs a search here).
    Where the pinned google-re2 exposes it, the compiled program's own `Match` is called: the wrapper's
    generator and match object cost another ~1 µs (1.78 → 0.83 µs, encoding included)."""

    __slots__ = ("pattern", "_search", "_match")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        compiled = re2.compile(pattern.encode("utf-8", "surrogatepass"))
        self._search = compiled.search
        raw = getattr(compiled, "_regexp", None)
        self._match = getattr(raw, "Match", None) if _UNANCHORED is not None else None

    def search(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        if self._match is not None:
            return self._match(_UNANCHORED, data, 0, len(data))[0][0] >= 0  # (-1, -1): no match
        return self._search(data) is not None


_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


def _regex(pattern: str) -> Any:
    compiled = _REGEXES.get(pattern)
    if compiled is None:
        re2.compile(pattern)  # a pattern RE2 refuses raises re2.error here, as before
        compiled = _REGEXES[pattern] = Utf8Regex(pattern)
    return compiled


def _in(left: Any, right: Any) -> Any:
    lpath, rpath = _path(left), _path(right)
    if lpath is not None and isinstance(right, p.ListLit):
        lits = [_scalar(i) for i in right.items]
        if all(lit is not None for lit in lits):
            return Pred("in", lpath, tuple(lit.value for lit in lits))
    if rpath is not None and _scalar(left) is not None:
        return Pred("contains", rpath, left.value)
    return OPAQUE


def _flatten(node: Any) -> Any:
    if isinstance(node, (And, Or)):
        kind = type(node)
        items: list[Any] = []
        for item in map(_flatten, node.items):
            items.extend(item.items if isinstance(item, kind) else (item,))
        return kind(tuple(items))
    if isinstance(node, Not):
        return Not(_flatten(node.item))
    return node


def analyse(text: str) -> Any:
    """The predicate tree of a filter; a lone OPAQUE when the analyser cannot read it."""
    try:
        return _flatten(_convert(p.parse(text)))
    except p.ParseFailure:
        return OPAQUE


def captured(node: Any) -> bool:
    if isinstance(node, (And, Or)):
        return all(captured(i) for i in node.items)
    if isinstance(node, Not):
        return captured(node.item)
    return not isinstance(node, Opaque)


# ---- evaluation ---------------------------------------------------------------------------------------

def resolve(path: Path, event: Any, meta: dict) -> Any:
    if path[0] == "meta":
        return meta[path[1]]
    if len(path) == 2 and type(event) is dict:  # the common case: a top-level field
        step = path[1]
        return event.get(step, ERROR) if type(step) is str else ERROR
    value = event
    for step in path[1:]:
        if isinstance(value, dict):
            if not isinstance(step, str) or step not in value:
                return ERROR
            value = value[step]
        elif isinstance(value, list) and type(step) is int:
            if not -1 < step < len(value):
                return ERROR
            value = value[step]
        else:
            return ERROR
    return value


def _number(v: Any) -> bool:
    return (type(v) is int or type(v) is float)


def equal(v: Any, lit: Any) -> bool:
    """CEL heterogeneous equality between a JSON value and a scalar literal."""
    if lit is None:
        return v is None
    if type(lit) is bool:
        return type(v) is bool and v == lit
    if type(lit) is str:
        return type(v) is str and v == lit
    return _number(v) and v == lit


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
          "!=": operator.ne}


def has_path(path: Path, event: Any) -> Any:
    """`has(event.a.b)`: True or False when `event.a` is a map, ERROR otherwise."""
    parent = resolve(path[:-1], event, {}) if len(path) > 2 else event
    if isinstance(parent, dict):
        return isinstance(path[-1], str) and path[-1] in parent
    return ERROR


def _pred(pr: Pred, event: Any, meta: dict) -> Any:
    kind = pr.kind
    if kind == "has":
        return has_path(pr.path, event)
    v = resolve(pr.path, event, meta)
    if v is ERROR:
        return ERROR
    if kind == "eq":
        return equal(v, pr.arg)
    if kind == "in":
        return any(equal(v, lit) for lit in pr.arg)
    if kind == "cmp":
        if not _number(v):
            return ERROR
        return _ORDER[pr.op](v, pr.arg)
    if kind == "truthy":
        return v if type(v) is bool else ERROR
    if kind == "str":
        if type(v) is not str:
            return ERROR
        return getattr(v, {"startsWith": "startswith", "endsWith": "endswith", "contains": "__contains__"}[pr.op])(pr.arg)
    if kind == "matches":
        if type(v) is not str:
            return ERROR
        return pr.arg.search(v)
    if kind == "size":
        if type(v) not in (str, list, dict):
            return ERROR
        return _ORDER[pr.op](len(v), pr.arg)
    if kind == "contains":
        if type(v) is list:
            return any(equal(x, pr.arg) for x in v)
        if type(v) is dict:  # keys are strings; a null key has no overload at all
            return ERROR if pr.arg is None else type(pr.arg) is str and pr.arg in v
        return ERROR
    raise AssertionError(kind)


def evaluate(node: Any, event: Any, meta: dict) -> Any:
    """True, False or ERROR, as CEL would answer, for a captured tree."""
    t = type(node)
    if t is Pred:
        return _pred(node, event, meta)
    if t is And:
        error = False
        for item in node.items:
            r = evaluate(item, event, meta)
            if r is False:
                return False
            error = error or r is ERROR
        return ERROR if error else True
    if t is Or:
        error = False
        for item in node.items:
            r = evaluate(item, event, meta)
            if r is True:
                return True
            error = error or r is ERROR
        return ERROR if error else False
    if t is Not:
        r = evaluate(node.item, event, meta)
        return r if r is ERROR else not r
    if t is Const:
        return node.value
    raise AssertionError("evaluate() on an opaque tree")


# ---- anchors ------------------------------------------------------------------------------------------

HAS = ("has",)


_NULL_KEY = ("null",)


def key(value: Any) -> Any:
    """The equality index key: equal keys ⇔ equal under CEL's heterogeneous equality; None: never equal.
    Python's own dict equality already agrees for strings and numbers (1 == 1.0, 2**53 + 1 != 2.0**53, NaN
    equals nothing); only bools (True == 1 in Python) and null need a tag."""
    t = type(value)
    if t is str or t is int or t is float:
        return value
    if t is bool:
        return ("bool", value)
    if value is None:
        return _NULL_KEY
    return None


def exact(node: Any) -> bool:
    """The filter is true exactly when one of its anchors holds: one equality, `in` a list of scalars, or
    a bare boolean field. The index then matches it on the anchor lookup alone."""
    if type(node) is not Pred:
        return False
    if node.kind == "eq":
        return key(node.arg) is not None
    if node.kind == "in":
        return all(key(lit) is not None for lit in node.arg)
    return node.kind == "truthy"


def anchors(node: Any) -> list[tuple[Path, Any]] | None:
    """Conditions (path, key or HAS) of which one holds whenever the filter is true; None: no such set."""
    t = type(node)
    if t is Pred:
        if node.kind == "eq":
            k = key(node.arg)
            return [(node.path, k)] if k is not None else []
        if node.kind == "in":
            return [(node.path, k) for k in map(key, node.arg) if k is not None]
        if node.kind == "truthy":
            return [(node.path, key(True))]
        if node.kind == "has":
            return [(node.path, HAS)]
        return None
    if t is And:
        options = [a for a in map(anchors, node.items) if a is not None]
        if not options:
            return None
        # equality before presence, then fewest conditions
        return min(options, key=lambda a: (any(k is HAS for _, k in a), len(a)))
    if t is Or:
        parts = [anchors(i) for i in node.items]
        if any(a is None for a in parts):
            return None
        return [c for part in parts for c in part]
    if t is Const:
        return None if node.value else []
    return None


# ---- compilation to closures: the same semantics as evaluate(), without walking the tree per event ----

def compile_tree(node: Any):
    """A function (event, meta) → True, False or ERROR, equal to `evaluate(node, ...)`."""
    t = type(node)
    if t is Pred:
        return _compile_pred(node)
    if t is Const:
        value = node.value
        return lambda event, meta: value
    if t is Not:
        inner = compile_tree(node.item)

        def negate(event, meta):
            r = inner(event, meta)
            return r if r is ERROR else not r
        return negate
    parts = tuple(compile_tree(i) for i in node.items)
    if t is And:
        def conjunction(event, meta):
            error = False
            for part in parts:
                r = part(event, meta)
                if r is False:
                    return False
                if r is ERROR:
                    error = True
            return ERROR if error else True
        return conjunction
    if t is Or:
        def disjunction(event, meta):
            error = False
            for part in parts:
                r = part(event, meta)
                if r is True:
                    return True
                if r is ERROR:
                    error = True
            return ERROR if error else False
        return disjunction
    raise AssertionError("compile_tree() on an opaque tree")


def _compile_pred(pr: Pred):
    path, arg = pr.path, pr.arg
    if not (len(path) == 2 and path[0] == "event" and type(path[1]) is str):
        return lambda event, meta: _pred(pr, event, meta)
    field = path[1]  # a top-level field: the common case, without the generic dispatch
    if pr.kind == "has":
        return lambda event, meta: field in event if type(event) is dict else ERROR
    test = _value_test(pr)
    if test is None:
        return lambda event, meta: _pred(pr, event, meta)

    def on_field(event, meta):
        if type(event) is not dict:
            return ERROR
        v = event.get(field, ERROR)
        return ERROR if v is ERROR else test(v)
    return on_field


def _value_test(pr: Pred):
    """`_pred`'s answer for a value that is present, as a function of the value; None: no shortcut."""
    arg, kind = pr.arg, pr.kind
    if kind == "eq":
        return (lambda v: type(v) is str and v == arg) if type(arg) is str else (lambda v: equal(v, arg))
    if kind == "in" and all(key(lit) is not None for lit in arg):
        keys = frozenset(map(key, arg))
        return lambda v: (v if type(v) in _PLAIN else key(v)) in keys
    if kind == "cmp":
        compare = _ORDER[pr.op]
        return lambda v: compare(v, arg) if type(v) in _NUMBER else ERROR
    if kind == "size":
        compare = _ORDER[pr.op]
        return lambda v: compare(len(v), arg) if type(v) in _SIZED else ERROR
    if kind == "matches":
        search = arg.search
        return lambda v: search(v) if type(v) is str else ERROR
    if kind == "str":
        method = {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}[pr.op]
        return lambda v: method(v, arg) if type(v) is str else ERROR
    return None


_PLAIN = frozenset((str, int, float))  # key(v) is v itself
_NUMBER = frozenset((int, float))
_SIZED = frozenset((str, list, dict))


# ---- the same functions as data, for the C plan walk (_plan.c evaluates them without calling Python) ----
# A node is (N_AND | N_OR, children), (N_NOT, child), (N_CONST, value), (N_FIELD, field, test, op, arg) for
# a predicate on a top-level field, or (N_PY, function) for any other: compile_tree's function for it.
N_AND, N_OR, N_NOT, N_CONST, N_FIELD, N_PY = range(6)
F_HAS, F_EQ_STR, F_EQ, F_IN, F_CMP, F_SIZE, F_STR = range(7)
_RICH = {"<": 0, "<=": 1, "==": 2, "!=": 3, ">": 4, ">=": 5}  # Py_LT ... Py_GE
_STR_METHODS = {"startsWith": 0, "endsWith": 1, "contains": 2}


def native_tree(node: Any) -> tuple:
    """compile_tree(node) as data, for _plan.c: the same answers (tests/unit/test_native.py)."""
    t = type(node)
    if t is Pred:
        return _native_pred(node) or (N_PY, _compile_pred(node))
    if t is Const:
        return (N_CONST, node.value)
    if t is Not:
        return (N_NOT, native_tree(node.item))
    if t is And or t is Or:
        return (N_AND if t is And else N_OR, tuple(native_tree(i) for i in node.items))
    raise AssertionError("native_tree() on an opaque tree")


def _native_pred(pr: Pred) -> tuple | None:
    """_compile_pred's on_field test as data, where C has it; None: the Python function is called."""
    path, arg, kind = pr.path, pr.arg, pr.kind
    if not (len(path) == 2 and path[0] == "event" and type(path[1]) is str):
        return None
    field = path[1]
    if kind == "has":
        return (N_FIELD, field, F_HAS, 0, None)
    if kind == "eq" and type(arg) is str:
        return (N_FIELD, field, F_EQ_STR, 0, arg)
    if kind == "eq" and (arg is None or type(arg) in (bool, int, float)):
        return (N_FIELD, field, F_EQ, 0, arg)
    if kind == "in" and all(key(lit) is not None for lit in arg):
        return (N_FIELD, field, F_IN, 0, frozenset(map(key, arg)))
    if kind in ("cmp", "size") and pr.op in _RICH and type(arg) in (int, float):
        return (N_FIELD, field, F_CMP if kind == "cmp" else F_SIZE, _RICH[pr.op], arg)
    if kind == "str" and pr.op in _STR_METHODS and type(arg) is str:
        return (N_FIELD, field, F_STR, _STR_METHODS[pr.op], arg)
    return None
