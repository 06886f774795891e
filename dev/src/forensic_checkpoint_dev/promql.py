"""A PromQL syntax and type check in Python, for the chart's alerting rules and dashboard where
promtool is not built (its cold build takes over 8 minutes on a 2-core machine; see
scripts/build-check-tools.sh). It follows Prometheus' grammar for what our rules use and refuses
what promtool refuses there: unbalanced brackets, unknown functions, a range vector where an
instant vector belongs (``sum(x[5m])``) and the reverse (``rate(x)``), bad durations, bad label
matchers or regular expressions, and binary operators between range vectors.

:func:`check` returns the expression's type (``vector``, ``scalar``, ``matrix``, ``string``) or
raises :class:`PromQLError`; :func:`metric_names` lists the metrics an expression selects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)(?![\w.])
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|0x[0-9a-fA-F]+|Inf|NaN)(?![\w])
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
    | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:@])
    )""",
    re.VERBOSE,
)
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_AGG_PARAM = {"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
_RANGE_FUNCTIONS = {
    "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
    "predict_linear", "holt_winters", "double_exponential_smoothing", "absent_over_time",
    "present_over_time", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time",
    "last_over_time", "mad_over_time",
}  # fmt: skip
_INSTANT_FUNCTIONS = {
    "abs", "absent", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn",
    "clamp", "clamp_min", "clamp_max", "histogram_quantile", "histogram_fraction",
    "histogram_count", "histogram_sum", "histogram_avg", "label_replace", "label_join", "sort",
    "sort_desc", "sort_by_label", "sort_by_label_desc", "timestamp", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year",
    "scalar", "vector", "time", "pi", "deg", "rad",
}  # fmt: skip
_SCALAR_FUNCTIONS = {"time", "pi", "scalar"}
#: Binary operators by precedence, loosest first; ``^`` binds right.
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("or",),
    ("and", "unless"),
    ("==", "!=", "<=", "<", ">=", ">"),
    ("+", "-"),
    ("*", "/", "%", "atan2"),
    ("^",),
)
_SET_OPERATORS = {"and", "or", "unless"}


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(expr: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(expr):
        if not expr[pos:].strip():
            break
        match = _TOKEN.match(expr, pos)
        if match is None or match.end() == pos:
            raise PromQLError(f"unexpected character at {pos}: {expr[pos : pos + 10]!r}")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, expr: str) -> None:
        self.tokens = _tokens(expr)
        self.pos = 0
        self.metrics: list[str] = []

    def peek(self, offset: int = 0) -> _Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def at(self, *texts: str) -> bool:
        token = self.peek()
        return token is not None and token.text in texts

    def take(self, text: str | None = None, kind: str | None = None) -> _Token:
        token = self.peek()
        if token is None or (text and token.text != text) or (kind and token.kind != kind):
            want = text or kind
            raise PromQLError(f"expected {want}, found {token.text if token else 'the end'}")
        self.pos += 1
        return token

    def parse(self) -> str:
        kind = self.binary(0)
        if self.peek() is not None:
            raise PromQLError(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return kind

    def binary(self, level: int) -> str:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.at(*_LEVELS[level]):
            op = self.take().text
            if self.at("bool"):
                self.take()
            self.modifiers()
            right = self.binary(level if op == "^" else level + 1)
            left = self.combine(op, left, right)
        return left

    def modifiers(self) -> None:
        if self.at("on", "ignoring"):
            self.take()
            self.labels()
            if self.at("group_left", "group_right"):
                self.take()
                if self.at("("):
                    self.labels()

    def combine(self, op: str, left: str, right: str) -> str:
        if "matrix" in (left, right) or "string" in (left, right):
            raise PromQLError(f"binary {op} needs scalars or instant vectors, got {left}, {right}")
        if op in _SET_OPERATORS and (left, right) != ("vector", "vector"):
            raise PromQLError(f"set operator {op} needs two instant vectors")
        return "scalar" if (left, right) == ("scalar", "scalar") else "vector"

    def unary(self) -> str:
        if self.at("-", "+"):
            self.take()
            kind = self.unary()
            if kind not in ("scalar", "vector"):
                raise PromQLError("unary minus needs a scalar or an instant vector")
            return kind
        kind = self.primary()
        self.selector_just_read = self.tokens[self.pos - 1].text == "}" or (
            self.tokens[self.pos - 1].kind == "ident" and kind == "vector"
        )
        return self.postfix(kind)

    def postfix(self, kind: str) -> str:
        while True:
            if self.at("["):
                kind = self.range(kind)
            elif self.at("offset"):
                self.take()
                if self.at("-"):
                    self.take()
                self.duration()
            elif self.at("@"):
                self.take()
                if self.at("start", "end"):
                    self.take()
                    self.take("(")
                    self.take(")")
                else:
                    self.take(kind="number")
            else:
                return kind
            self.selector_just_read = False

    def range(self, kind: str) -> str:
        """``[5m]`` after a selector, or a subquery ``[10m:1m]`` after any instant vector."""
        self.take("[")
        self.duration()
        if self.at(":"):
            self.take(":")
            if not self.at("]"):
                self.duration()
            if kind != "vector":
                raise PromQLError("a subquery needs an instant vector")
        elif not self.selector_just_read:
            raise PromQLError("a range needs a vector selector or a subquery")
        self.take("]")
        return "matrix"

    def duration(self) -> None:
        """``5m``, or a plain number of seconds (Prometheus 3 takes ``[300]``)."""
        token = self.peek()
        if token is None or token.kind not in ("duration", "number"):
            raise PromQLError(f"expected a duration, found {token.text if token else 'the end'}")
        self.pos += 1

    #: The last primary was a plain vector selector (``name{...}``): a range may follow.
    selector_just_read = False

    def primary(self) -> str:
        token = self.peek()
        if token is None:
            raise PromQLError("unexpected end of expression")
        if token.kind in ("number", "string"):
            self.take()
            return "scalar" if token.kind == "number" else "string"
        if token.text == "(":
            self.take("(")
            kind = self.binary(0)
            self.take(")")
            return kind
        if token.text == "{":
            self.matchers()
            return "vector"
        if token.kind != "ident":
            raise PromQLError(f"unexpected {token.text!r}")
        name = token.text
        following = self.peek(1)
        if (
            name in _AGGREGATIONS
            and following is not None
            and following.text in ("(", "by", "without")
        ):
            return self.aggregation()
        if following is not None and following.text == "(":
            return self.function()
        self.take()
        self.metrics.append(name)
        if self.at("{"):
            self.matchers()
        return "vector"

    def aggregation(self) -> str:
        name = self.take().text
        grouped = False
        if self.at("by", "without"):
            self.take()
            self.labels()
            grouped = True
        self.take("(")
        if name in _AGG_PARAM:
            param = self.binary(0)
            if param not in ("scalar", "string"):
                raise PromQLError(f"{name}'s parameter must be a scalar or a string")
            self.take(",")
        if self.binary(0) != "vector":
            raise PromQLError(f"{name} needs an instant vector")
        self.take(")")
        if not grouped and self.at("by", "without"):
            self.take()
            self.labels()
        return "vector"

    def function(self) -> str:
        name = self.take().text
        if name not in _RANGE_FUNCTIONS and name not in _INSTANT_FUNCTIONS:
            raise PromQLError(f"unknown function {name}")
        self.take("(")
        args = []
        while not self.at(")"):
            args.append(self.binary(0))
            if not self.at(")"):
                self.take(",")
        self.take(")")
        if name in _RANGE_FUNCTIONS and (not args or "matrix" not in args[:1] + args[1:2]):
            raise PromQLError(f"{name} needs a range vector")
        if name in _INSTANT_FUNCTIONS and "matrix" in args:
            raise PromQLError(f"{name} takes no range vector")
        if name == "histogram_quantile" and args != ["scalar", "vector"]:
            raise PromQLError("histogram_quantile(scalar, instant vector)")
        return "scalar" if name in _SCALAR_FUNCTIONS else "vector"

    def labels(self) -> None:
        self.take("(")
        while not self.at(")"):
            self.take(kind="ident")
            if not self.at(")"):
                self.take(",")
        self.take(")")

    def matchers(self) -> None:
        self.take("{")
        while not self.at("}"):
            label = self.take(kind="ident").text
            op = self.take().text
            if op not in ("=", "!=", "=~", "!~"):
                raise PromQLError(f"bad matcher operator {op!r} for {label}")
            value = self.take(kind="string").text[1:-1]
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise PromQLError(f"bad regular expression {value!r}: {exc}") from exc
            if not self.at("}"):
                self.take(",")
        self.take("}")


def check(expr: str) -> str:
    """The type of ``expr``; :class:`PromQLError` if promtool would refuse it."""
    return _Parser(expr).parse()


def metric_names(expr: str) -> set[str]:
    parser = _Parser(expr)
    parser.parse()
    return set(parser.metrics)
