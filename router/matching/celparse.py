"""A small parser for CEL's syntax (cel-spec langdef.md), used only to *analyse* filters: which parts are
plain predicates over one field (`event.a.b == "x"`, `in [..]`, ranges, `has()`, `startsWith()`) joined by
`&&`, `||` and `!`. Evaluation stays with the CEL engine unless the whole filter is such predicates.

Anything it does not understand becomes an `Opaque` node; a filter it cannot parse at all is opaque as a
whole. Both are always safe: opaque parts are left to the CEL engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<float>(?:\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?))
  | (?P<uint>(?:0[xX][0-9a-fA-F]+|\d+)[uU])
  | (?P<int>0[xX][0-9a-fA-F]+|\d+)
  | (?P<string>[rRbB]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
  | (?P<quoted>`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||\?\.|[-+*/%!<>?:.,()\[\]{}])
""", re.VERBOSE)
KEYWORDS = {"true": True, "false": False, "null": None}


class ParseFailure(Exception):
    pass


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ParseFailure(f"unexpected character at {pos}")
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup, m.group(), pos))
        pos = m.end()
    out.append(Tok("eof", "", pos))
    return out


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
            "'": "'", '"': '"', "`": "`", "?": "?"}


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xX":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif nxt == "u":
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif nxt == "U":
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif nxt in "0123":
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise ParseFailure(f"unknown escape \\{nxt}")
    return "".join(out)


def string_value(tok: str) -> str | bytes:
    prefix = ""
    while tok[0] in "rRbB":
        prefix += tok[0].lower()
        tok = tok[1:]
    quote = 3 if tok[:3] in ('"""', "'''") else 1
    body = tok[quote:-quote]
    if "b" in prefix:
        raise ParseFailure("bytes literal")  # never equal to a JSON value; left to the engine
    return body if "r" in prefix else _unescape(body)


# The syntax tree: just enough to analyse filters.
@dataclass(frozen=True)
class Lit:
    value: Any
    kind: str  # "int", "uint", "double", "string", "bool", "null"


@dataclass(frozen=True)
class Ident:
    name: str


@dataclass(frozen=True)
class Select:
    operand: Any
    field: str


@dataclass(frozen=True)
class Index:
    operand: Any
    index: Any


@dataclass(frozen=True)
class Call:
    function: str
    target: Any  # None for a global call
    args: tuple


@dataclass(frozen=True)
class ListLit:
    items: tuple


@dataclass(frozen=True)
class Other:
    """Syntax the analysis does not look into (maps, messages, optionals)."""


class Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, *texts: str) -> bool:
        t = self.toks[self.i]
        return t.kind == "op" and t.text in texts or t.kind == "ident" and t.text in texts

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> None:
        if self.take().text != text:
            raise ParseFailure(f"expected {text!r}")

    def parse(self) -> Any:
        node = self.expr()
        if self.toks[self.i].kind != "eof":
            raise ParseFailure("trailing input")
        return node

    def expr(self) -> Any:
        cond = self.or_()
        if self.peek("?"):
            self.take()
            a = self.or_()
            self.expect(":")
            b = self.expr()
            return Call("_?_:_", None, (cond, a, b))
        return cond

    def or_(self) -> Any:
        node = self.and_()
        while self.peek("||"):
            self.take()
            node = Call("_||_", None, (node, self.and_()))
        return node

    def and_(self) -> Any:
        node = self.relation()
        while self.peek("&&"):
            self.take()
            node = Call("_&&_", None, (node, self.relation()))
        return node

    def relation(self) -> Any:
        node = self.addition()
        while self.peek("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.take().text
            node = Call(f"_{op}_" if op != "in" else "@in", None, (node, self.addition()))
        return node

    def addition(self) -> Any:
        node = self.multiplication()
        while self.peek("+", "-"):
            op = self.take().text
            node = Call(f"_{op}_", None, (node, self.multiplication()))
        return node

    def multiplication(self) -> Any:
        node = self.unary()
        while self.peek("*", "/", "%"):
            op = self.take().text
            node = Call(f"_{op}_", None, (node, self.unary()))
        return node

    def unary(self) -> Any:
        if self.peek("!"):
            self.take()
            return Call("!_", None, (self.unary(),))
        if self.peek("-"):
            self.take()
            operand = self.unary()
            if isinstance(operand, Lit) and operand.kind in ("int", "double"):
                return Lit(-operand.value, operand.kind)
            return Call("-_", None, (operand,))
        return self.member()

    def member(self) -> Any:
        node = self.primary()
        while True:
            if self.peek(".", "?."):
                optional = self.take().text == "?."
                t = self.take()
                if t.kind == "quoted":
                    name = t.text[1:-1]
                elif t.kind == "ident":
                    name = t.text
                else:
                    raise ParseFailure("expected a field name")
                if self.peek("("):
                    node = Call(name, node, self.args(")"))
                else:
                    node = Other() if optional else Select(node, name)
            elif self.peek("["):
                self.take()
                optional = self.peek("?")
                if optional:
                    self.take()
                index = self.expr()
                self.expect("]")
                node = Other() if optional else Index(node, index)
            elif self.peek("{") and isinstance(node, (Ident, Select)):
                self.braces()
                node = Other()
            else:
                return node

    def args(self, close: str) -> tuple:
        self.expect("(" if close == ")" else "[")
        items = []
        while not self.peek(close):
            items.append(self.expr())
            if not self.peek(close):
                self.expect(",")
        self.take()
        return tuple(items)

    def braces(self) -> None:
        self.expect("{")
        depth = 1
        while depth:
            t = self.take()
            if t.kind == "eof":
                raise ParseFailure("unclosed brace")
            depth += t.text == "{" and t.kind == "op"
            depth -= t.text == "}" and t.kind == "op"

    def primary(self) -> Any:
        t = self.toks[self.i]
        if t.kind == "op" and t.text == "(":
            self.take()
            node = self.expr()
            self.expect(")")
            return node
        if t.kind == "op" and t.text == "[":
            return ListLit(self.args("]"))
        if t.kind == "op" and t.text == "{":
            self.braces()
            return Other()
        if t.kind == "op" and t.text == ".":
            self.take()
            return self.primary()
        self.take()
        if t.kind == "int":
            return Lit(int(t.text, 0), "int")
        if t.kind == "uint":
            return Lit(int(t.text[:-1], 0), "uint")
        if t.kind == "float":
            return Lit(float(t.text), "double")
        if t.kind == "string":
            return Lit(string_value(t.text), "string")
        if t.kind == "ident":
            if t.text in KEYWORDS:
                v = KEYWORDS[t.text]
                return Lit(v, "null" if v is None else "bool")
            if self.peek("("):
                return Call(t.text, None, self.args(")"))
            return Ident(t.text)
        raise ParseFailure(f"unexpected {t.text!r}")


def parse(text: str) -> Any:
    """The syntax tree of a filter; ParseFailure when this analyser cannot read it."""
    try:
        return Parser(text).parse()
    except (IndexError, ValueError) as exc:
        raise ParseFailure(str(exc)) from None
