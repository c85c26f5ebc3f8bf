"""`?filter=` expressions: the subset of go-bexpr that API clients use.

Supported: `==`, `!=`, `in`, `not in`, `is empty`, `is not empty`,
`contains`, `not contains`, `matches`, `not matches`, `and`, `or`, `not`,
parentheses; selectors with dots (`Service.Tags`, `Node.Meta.rack`);
values quoted with "..." or `...`, numbers and booleans.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .request import HTTPError

if TYPE_CHECKING:
    from .request import Request

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<op>==|!=|\(|\))|(?P<word>[A-Za-z0-9_.\-\[\]/:]+))'
)

Predicate = Callable[[Any], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        value = m.group(kind)
        if kind == "str":
            value = bytes(value[1:-1], "utf-8").decode("unicode_escape")
        elif kind == "raw":
            value, kind = value[1:-1], "str"
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.toks[i] if i < len(self.toks) else None

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1] in words:
            self.pos += 1
            return True
        return False

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ValueError("unexpected end of expression")
        self.pos += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if (tok := self.peek()) is not None:
            raise ValueError(f"unexpected token {tok[1]!r}")
        return pred

    def or_expr(self) -> Predicate:
        return self._chain("or", self.and_expr, any)

    def and_expr(self) -> Predicate:
        return self._chain("and", self.not_expr, all)

    def _chain(self, word: str, operand: Callable[[], Predicate], combine) -> Predicate:
        parts = [operand()]
        while self.word(word):
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return lambda obj: combine(p(obj) for p in parts)

    def not_expr(self) -> Predicate:
        if self.word("not"):
            inner = self.not_expr()
            return lambda obj: not inner(obj)
        if self.peek() == ("op", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("op", ")"):
                raise ValueError("missing )")
            return inner
        return self.match()

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text
        if kind == "word" and text in ("true", "false"):
            return text == "true"
        if kind == "word" and re.fullmatch(r"-?\d+(\.\d+)?", text):
            return text
        raise ValueError(f"expected a value, got {text!r}")

    def match(self) -> Predicate:
        tok = self.peek()
        if (tok and tok[0] == "str") or (tok and re.fullmatch(r"-?\d+(\.\d+)?|true|false", tok[1])):
            value = self.value()
            negate = self.word("not")
            if not self.word("in"):
                raise ValueError("expected 'in'")
            sel = self.selector()
            return lambda obj: _contains(sel(obj), value) != negate
        sel = self.selector()
        _kind, op = self.take()
        if op in ("==", "!="):
            value = self.value()
            return lambda obj: (_text(sel(obj)) == _text(value)) == (op == "==")
        negate = op == "not"
        if negate:
            op = self.take()[1]
        if op == "is":
            negate = self.word("not")
            if not self.word("empty"):
                raise ValueError("expected 'empty'")
            return lambda obj: (not sel(obj)) != negate
        if op == "contains":
            value = self.value()
            return lambda obj: _contains(sel(obj), value) != negate
        if op == "matches":
            pattern = re.compile(self.value())
            return lambda obj: bool(pattern.search(_text(sel(obj)))) != negate
        raise ValueError(f"unknown operator {op!r}")

    def selector(self) -> Callable[[Any], Any]:
        kind, text = self.take()
        if kind != "word" or text in ("and", "or", "not", "in", "is"):
            raise ValueError(f"expected a selector, got {text!r}")
        parts = text.split(".")

        def select(obj: Any) -> Any:
            for part in parts:
                obj = obj.get(part) if isinstance(obj, dict) else None
            return obj

        return select


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _contains(container: Any, value: Any) -> bool:
    if isinstance(container, str):
        return _text(value) in container
    if isinstance(container, (list, dict)):
        return _text(value) in [_text(v) for v in container]
    return False


def compile_filter(text: str) -> Predicate:
    try:
        return _Parser(text).parse()
    except (ValueError, re.error) as err:
        raise HTTPError(400, f"Failed to create boolean expression evaluator: {err}") from err


def apply_filter(req: Request, rows: list) -> list:
    text = req.get("filter")
    if not text:
        return rows
    pred = compile_filter(text)
    return [row for row in rows if pred(row)]
