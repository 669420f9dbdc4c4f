"""The grammar of MLflow search strings: search_runs/search_experiments filters and order_by.

A hand-written, context-driven lexer plus recursive-descent parser (stdlib only, no sqlparse) that
turns a filter string into a tuple of frozen :class:`Comparison` nodes (an implicit AND) and
``order_by`` items into :class:`OrderBy` nodes. Which entity allows which comparator, the entity
prefixes and the attribute aliases follow ``mlflow/utils/search_utils.py`` (MLflow 3.x).

Grammar (keywords case-insensitive, entity prefixes case-sensitive as in MLflow)::

    filter     := clause (AND clause)*
    clause     := identifier (op value | [NOT] IN list | IS [NOT] NULL)
    identifier := prefix "." key | attribute    -- a bare name is an attribute, as in MLflow
    key        := [word chars and dots]+ | quoted with ` " or '
    value      := 'string' | "string" | number  -- number: -?(d+[.d*]|.d+)([eE][+-]?d+)?
    list       := "(" string ("," string)* [","] ")"
    order_by   := identifier [ASC | DESC]

Inside quotes the quote character is escaped by doubling it (``'it''s'``) or with a backslash
(``'it\\'s'``), and ``\\\\`` is one backslash; any other backslash is kept as written, so LIKE
escapes such as ``'100\\%'`` reach :func:`like_to_regex` intact. Every error is an
:class:`~deltaflow.errors.InvalidArgument` naming the 0-based character position, a short excerpt of
the input there, and what is allowed; no message quotes more than ~60 characters of input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Mapping, NoReturn, Tuple, Union

from deltaflow.errors import InvalidArgument

__all__ = [
    "Entity", "Comparison", "OrderBy", "RUN_STRING_ATTRIBUTES", "RUN_NUMERIC_ATTRIBUTES",
    "EXPERIMENT_STRING_ATTRIBUTES", "EXPERIMENT_NUMERIC_ATTRIBUTES", "DATASET_KEYS",
    "MAX_FILTER_LENGTH", "parse_run_filter", "parse_run_order_by", "parse_experiment_filter",
    "parse_experiment_order_by", "like_to_regex", "like_to_linear_regex",
    "like_match", "parse_registered_model_filter",
    "parse_registered_model_order_by", "parse_model_version_filter", "parse_model_version_order_by", "evaluate",
]  # fmt: skip

Entity = Literal["metric", "param", "tag", "attribute", "dataset"]
Value = Union[float, int, str, Tuple[str, ...], None]  # runtime alias: works on Python 3.10


@dataclass(frozen=True)
class Comparison:
    """One ``<entity>.<key> <op> <value>`` clause of a filter."""

    entity: str  # one of Entity
    key: str  # metric/param/tag key as written (unquoted); canonical attribute; dataset field
    op: str  # = != > >= < <= LIKE ILIKE IN, NOT IN, IS NULL, IS NOT NULL (always upper case)
    value: Value  # float for metrics; int for numeric attributes; tuple for IN; None for IS NULL


@dataclass(frozen=True)
class OrderBy:
    entity: str
    key: str
    ascending: bool


# NB: MLflow itself cannot filter or order on lifecycle_stage (it uses ViewType); deltaflow can.
RUN_STRING_ATTRIBUTES = (
    "run_id", "run_name", "status", "user_id", "artifact_uri", "lifecycle_stage"
)  # fmt: skip
RUN_NUMERIC_ATTRIBUTES = ("start_time", "end_time")
EXPERIMENT_STRING_ATTRIBUTES = ("name", "experiment_id", "lifecycle_stage")
EXPERIMENT_NUMERIC_ATTRIBUTES = ("creation_time", "last_update_time")
DATASET_KEYS = ("name", "digest", "context")
MAX_FILTER_LENGTH = 10_000

_NUMERIC_OPS = ("=", "!=", ">", ">=", "<", "<=")
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE")
_LIST_OPS = ("IN", "NOT IN")
_NULL_OPS = ("IS NULL", "IS NOT NULL")
_INT64_LIMIT = 2**63  # numeric attributes are Spark LongType columns
_EXCERPT = 24  # characters of input shown after "near"
_CLIP = 32  # characters of a user-supplied name shown in a message

_RUN_PREFIXES: Mapping[str, str] = {
    "metric": "metric", "metrics": "metric",
    "param": "param", "params": "param", "parameter": "param", "parameters": "param",
    "tag": "tag", "tags": "tag",
    "attribute": "attribute", "attributes": "attribute", "attr": "attribute", "run": "attribute",
    "dataset": "dataset", "datasets": "dataset",
}  # fmt: skip
# MLflow's SearchExperimentsUtils accepts exactly these three prefixes (not "attributes"/"attr").
_EXPERIMENT_PREFIXES: Mapping[str, str] = {"attribute": "attribute", "tag": "tag", "tags": "tag"}
# MLflow's display-name aliases (SearchUtils.translate_key_alias), mapped to canonical names.
_RUN_ALIASES: Mapping[str, str] = {
    "created": "start_time", "Created": "start_time",
    "run name": "run_name", "Run name": "run_name", "Run Name": "run_name",
}  # fmt: skip
_ENTITY_LABEL = {"metric": "metrics", "param": "params", "tag": "tags", "dataset": "datasets"}


@dataclass(frozen=True)
class _Grammar:
    """What differs between the run and the experiment search languages."""

    name: str
    prefixes: Mapping[str, str]
    string_attrs: tuple[str, ...]
    numeric_attrs: tuple[str, ...]
    list_attrs: tuple[str, ...]  # attributes allowed with IN / NOT IN (MLflow LIST_SUPPORTED_KEYS)
    null_entities: tuple[str, ...]  # entities allowed with IS [NOT] NULL
    order_entities: tuple[str, ...]  # entities allowed in order_by
    prefix_hint: str  # the prefixes to suggest in messages
    aliases: Mapping[str, str] = field(default_factory=dict)


_RUNS = _Grammar(
    "run", _RUN_PREFIXES, RUN_STRING_ATTRIBUTES, RUN_NUMERIC_ATTRIBUTES,
    list_attrs=("run_id",),
    null_entities=("param", "tag"),
    # MLflow parses "datasets.x" in order_by but every store then rejects it; fail early instead.
    order_entities=("metric", "param", "tag", "attribute"),
    prefix_hint="metrics., params., tags., attributes., datasets.",
    aliases=_RUN_ALIASES,
)  # fmt: skip
_EXPERIMENTS = _Grammar(
    "experiment", _EXPERIMENT_PREFIXES, EXPERIMENT_STRING_ATTRIBUTES, EXPERIMENT_NUMERIC_ATTRIBUTES,
    list_attrs=("experiment_id",), null_entities=("tag",), order_entities=("attribute",),
    prefix_hint="attribute., tags.",
)  # fmt: skip

# MLflow's SearchModelUtils / SearchModelVersionUtils keys, plus the stage and creator, which the
# Databricks registry lets users filter on.
_REGISTERED_MODELS = _Grammar(
    "registered model", _EXPERIMENT_PREFIXES, ("name", "user_id"),
    ("creation_timestamp", "last_updated_timestamp"), list_attrs=("name",), null_entities=("tag",),
    order_entities=("attribute",), prefix_hint="tags.",
    aliases={"timestamp": "last_updated_timestamp"},
)  # fmt: skip
_MODEL_VERSIONS = _Grammar(
    "model version", _EXPERIMENT_PREFIXES, ("name", "run_id", "source_path", "current_stage", "user_id"),
    ("version_number", "creation_timestamp", "last_updated_timestamp"), list_attrs=("name", "run_id"),
    null_entities=("tag",), order_entities=("attribute",), prefix_hint="tags.",
    aliases={"timestamp": "last_updated_timestamp", "source": "source_path", "stage": "current_stage"},
)  # fmt: skip


def _show(text: str, limit: int = _CLIP) -> str:
    """Quote user text for a message: clipped, control characters and lone surrogates escaped."""
    clipped = text[:limit] + ("..." if len(text) > limit else "")
    quoted = json.dumps(clipped, ensure_ascii=False)
    return quoted.encode("utf-8", "backslashreplace").decode("utf-8")


def _verb(label: str, verb: str) -> str:
    # "metrics allow ..." but "attributes.status allows ..."
    return verb + "s" if label.startswith("attributes.") else verb


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Parser:
    """Cursor over one input string; each method lexes exactly the token its caller expects."""

    def __init__(self, text: str, grammar: _Grammar, what: str) -> None:
        self.s = text
        self.i = 0
        self.g = grammar
        self.what = what

    def fail(self, message: str, pos: int) -> NoReturn:
        near = f"near {_show(self.s[pos:], _EXCERPT)}" if pos < len(self.s) else "at the end"
        raise InvalidArgument(f"Invalid {self.what}: {message} (at position {pos} {near})")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def word(self) -> str:
        start = self.i
        while self.i < len(self.s) and _is_word(self.s[self.i]):
            self.i += 1
        return self.s[start : self.i]

    def keyword(self) -> str:
        self.skip_ws()
        return self.word().upper()

    def quoted(self) -> str:
        """Lex a string quoted with the character under the cursor, undoing its escapes."""
        s, start = self.s, self.i
        q, out, i = s[start], [], start + 1
        while i < len(s):
            ch = s[i]
            if ch == q:
                if s[i + 1 : i + 2] == q:  # doubled quote, SQL style
                    out.append(q)
                    i += 2
                    continue
                self.i = i + 1
                return "".join(out)
            if ch == "\\" and s[i + 1 : i + 2] in (q, "\\"):
                out.append(s[i + 1])
                i += 2
                continue
            out.append(ch)
            i += 1
        self.fail(f"unterminated quoted text; close it with {q}", start)

    def digits_from(self, j: int) -> int:
        while j < len(self.s) and "0" <= self.s[j] <= "9":  # ASCII only, unlike str.isdigit
            j += 1
        return j

    def number(self) -> str:
        s, start = self.s, self.i
        i = start + 1 if s[start : start + 1] == "-" else start
        j = self.digits_from(i)
        if s[j : j + 1] == ".":
            j = self.digits_from(j + 1)
        if j == i or s[i:j] == ".":
            self.fail("expected a number", start)
        if s[j : j + 1] in ("e", "E"):
            k = j + 2 if s[j + 1 : j + 2] in ("+", "-") else j + 1
            j = self.digits_from(k)
            if j == k:
                self.fail("malformed exponent in number", start)
        if j < len(s) and (_is_word(s[j]) or s[j] == "."):  # 0x10, 1_000, 1.2.3, 5abc
            self.fail("malformed number", start)
        self.i = j
        return s[start:j]

    def key_after_prefix(self, prefix: str) -> tuple[str, int]:
        pos = self.i
        ch = self.peek()
        if ch in ("`", '"', "'"):
            key = self.quoted()
        elif ch and (_is_word(ch) or ch == "."):
            while self.i < len(self.s) and (_is_word(self.s[self.i]) or self.s[self.i] == "."):
                self.i += 1
            key = self.s[pos : self.i]
        else:
            self.fail(f"expected a key after {_show(prefix + '.')} (quote keys that contain "
                      "spaces, dashes or slashes in backticks)", pos)
        if not key:
            self.fail("empty key", pos)
        return key, pos

    def identifier(self, for_order_by: bool) -> tuple[str, str]:
        """Parse ``prefix.key`` or a bare attribute name; return (entity, canonical key)."""
        start = self.i
        ch = self.peek()
        if ch in ("`", '"'):
            name = self.quoted()
        elif ch and _is_word(ch):
            name = self.word()
        else:
            hint = " (parentheses are not supported; join clauses with AND)" if ch == "(" else ""
            self.fail(
                f"expected an identifier such as metrics.<key>, params.<key>, tags.<key> "
                f"or attributes.<name>{hint}",
                start,
            )
        if self.peek() == ".":
            self.i += 1
            entity = self.g.prefixes.get(name)
            if entity is None:
                allowed = ", ".join(f"{p}." for p in self.g.prefixes)
                self.fail(f"unknown entity prefix {_show(name)}; allowed: {allowed}", start)
            key, key_pos = self.key_after_prefix(name)
        else:  # MLflow treats an unprefixed name as an attribute
            entity, key, key_pos = "attribute", name, start
        if entity == "attribute":
            canonical = self.g.aliases.get(key, key)
            names = self.g.string_attrs + self.g.numeric_attrs
            if canonical not in names:
                aliases = f" (aliases: {', '.join(self.g.aliases)})" if self.g.aliases else ""
                self.fail(
                    f"unknown {self.g.name} attribute {_show(key)}; allowed: {', '.join(names)}"
                    f"{aliases}; other keys need a prefix: {self.g.prefix_hint}",
                    key_pos,
                )
            key = canonical
        elif entity == "dataset" and key not in DATASET_KEYS:
            allowed = ", ".join(DATASET_KEYS)
            self.fail(f"unknown dataset field {_show(key)}; allowed: {allowed}", key_pos)
        if for_order_by and entity not in self.g.order_entities:
            allowed = ", ".join(_ENTITY_LABEL.get(e, "attributes") for e in self.g.order_entities)
            label = _ENTITY_LABEL.get(entity, entity)
            self.fail(f"cannot order {self.g.name}s by {label}; allowed: {allowed}", start)
        return entity, key

    def comparator(self) -> tuple[str, int]:
        self.skip_ws()
        start = self.i
        if self.peek() in ("=", "!", "<", ">"):
            while self.peek() in ("=", "!", "<", ">"):
                self.i += 1
            op = self.s[start : self.i]
            if op in _NUMERIC_OPS:
                return op, start
            allowed = ", ".join(_NUMERIC_OPS)
            self.fail(f"unknown comparator {_show(op)}; use one of {allowed}", start)
        op = self.word().upper()
        if op in ("LIKE", "ILIKE", "IN"):
            return op, start
        if op == "NOT":
            if self.keyword() == "IN":
                return "NOT IN", start
            self.fail("expected IN after NOT (NOT LIKE is not supported)", start)
        if op == "IS":
            nxt = self.keyword()
            if nxt == "NULL":
                return "IS NULL", start
            if nxt == "NOT" and self.keyword() == "NULL":
                return "IS NOT NULL", start
            self.fail("expected NULL or NOT NULL after IS", start)
        self.fail("expected a comparator: =, !=, >, >=, <, <=, LIKE, ILIKE, IN, NOT IN, IS NULL, "
                  "IS NOT NULL", start)

    def allowed_ops(self, entity: str, key: str) -> tuple[tuple[str, ...], str]:
        """The comparators ``entity.key`` accepts, and how to name it in a message."""
        if entity == "metric":
            return _NUMERIC_OPS, "metrics"
        if entity in ("param", "tag"):
            nulls = _NULL_OPS if entity in self.g.null_entities else ()
            return _STRING_OPS + nulls, _ENTITY_LABEL[entity]
        if entity == "dataset":
            return _STRING_OPS + _LIST_OPS, "datasets"
        if key in self.g.numeric_attrs:
            return _NUMERIC_OPS, f"attributes.{key}"
        lists = _LIST_OPS if key in self.g.list_attrs else ()
        return _STRING_OPS + lists, f"attributes.{key}"

    def string_list(self) -> tuple[str, ...]:
        self.skip_ws()
        if self.peek() != "(":
            self.fail("IN needs a parenthesised list of quoted strings, e.g. ('a', 'b')", self.i)
        self.i += 1
        items: list[str] = []
        while True:
            self.skip_ws()
            if self.peek() == ")" and items:  # a trailing comma is fine, as in MLflow
                self.i += 1
                return tuple(items)
            if self.peek() not in ("'", '"'):
                empty = self.peek() == ")"
                self.fail("the IN list is empty; give at least one quoted string" if empty
                          else "expected a quoted string in the IN list", self.i)
            items.append(self.quoted())
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() == ")":
                self.i += 1
                return tuple(items)
            else:
                self.fail("expected , or ) in the IN list", self.i)

    def value(self, entity: str, key: str, op: str, label: str) -> Value:
        if op in _NULL_OPS:
            return None
        if op in _LIST_OPS:
            return self.string_list()
        self.skip_ws()
        pos, ch = self.i, self.peek()
        numeric = entity == "metric" or (entity == "attribute" and key in self.g.numeric_attrs)
        if numeric:
            if ch in ("'", '"', "`"):
                verb = _verb(label, "compare")
                self.fail(f"{label} {verb} with a number, not a quoted string", pos)
            text = self.number()
            if entity == "metric":
                return float(text)
            return self.whole_number(text, label, pos)
        if ch in ("'", '"'):
            return self.quoted()
        if ch and ("0" <= ch <= "9" or ch in ("-", ".")):
            verb = _verb(label, "compare")
            self.fail(f"{label} {verb} with a quoted string such as '1', not a number", pos)
        self.fail(f"{label} {_verb(label, 'need')} a value in single or double quotes", pos)

    def whole_number(self, text: str, label: str, pos: int) -> int:
        # Timestamps are integer milliseconds; 1e3 is fine, 1.5 is not.
        try:
            number = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:  # > 4300 digits: Python refuses to convert
            self.fail(f"{label} value is out of range", pos)
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        elif isinstance(number, float) and abs(number) < _INT64_LIMIT:
            self.fail(f"{label} needs a whole number of milliseconds", pos)
        if not -_INT64_LIMIT <= number < _INT64_LIMIT:  # also catches inf
            self.fail(f"{label} value is out of range for a 64-bit integer", pos)
        return number

    def clause(self) -> Comparison:
        entity, key = self.identifier(for_order_by=False)
        op, op_pos = self.comparator()
        allowed, label = self.allowed_ops(entity, key)
        if op not in allowed:
            extra = ""
            if op in _LIST_OPS and entity == "attribute":
                extra = f" (IN and NOT IN work only with attributes.{self.g.list_attrs[0]})"
            elif op in _NULL_OPS:
                nullable = ", ".join(_ENTITY_LABEL[e] for e in self.g.null_entities)
                extra = f" (IS NULL and IS NOT NULL work only with {nullable})"
            ops = ", ".join(allowed)
            self.fail(f"{label} {_verb(label, 'allow')} {ops}; found {op}{extra}", op_pos)
        return Comparison(entity, key, op, self.value(entity, key, op, label))

    def parse_filter(self) -> tuple[Comparison, ...]:
        self.skip_ws()
        if self.eof():
            return ()
        clauses = [self.clause()]
        while True:
            self.skip_ws()
            if self.eof():
                return tuple(clauses)
            pos = self.i
            joiner = self.word().upper()
            if joiner != "AND":
                hint = " (OR is not supported)" if joiner == "OR" else ""
                self.fail(f"expected AND or the end of the filter{hint}", pos)
            self.skip_ws()
            if self.eof():
                self.fail("expected a comparison after AND", self.i)
            clauses.append(self.clause())

    def parse_order_by(self) -> OrderBy:
        self.skip_ws()
        if self.eof():
            self.fail("empty order_by clause; expected e.g. metrics.acc DESC", self.i)
        entity, key = self.identifier(for_order_by=True)
        self.skip_ws()
        ascending = True
        if not self.eof():
            pos = self.i
            direction = self.word().upper()
            if direction not in ("ASC", "DESC"):
                self.fail("expected ASC, DESC or the end of the order_by clause", pos)
            ascending = direction == "ASC"
            self.skip_ws()
            if not self.eof():
                self.fail("unexpected text after the sort direction", self.i)
        return OrderBy(entity, key, ascending)


def _checked(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be a string, got {_show(type(text).__name__)}")
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(
            f"{what} is {len(text)} characters long; the limit is {MAX_FILTER_LENGTH}"
        )
    return text


def _parse_filter(text: str | None, grammar: _Grammar) -> tuple[Comparison, ...]:
    what = f"{grammar.name} search filter"
    if text is None:
        return ()
    return _Parser(_checked(text, what), grammar, what).parse_filter()


def _parse_order_by(items: list[str] | None, grammar: _Grammar) -> tuple[OrderBy, ...]:
    what = f"{grammar.name} order_by clause"
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):  # a lone str would otherwise be split into characters
        got = _show(type(items).__name__)
        raise InvalidArgument(f"order_by must be a list of strings, got {got}")
    return tuple(_Parser(_checked(item, what), grammar, what).parse_order_by() for item in items)


def parse_run_filter(text: str | None) -> tuple[Comparison, ...]:
    """Parse a ``search_runs`` filter; ``None``/empty gives ``()`` (no condition)."""
    return _parse_filter(text, _RUNS)


def parse_run_order_by(items: list[str] | None) -> tuple[OrderBy, ...]:
    """Parse ``search_runs`` order_by items such as ``["metrics.acc DESC", "start_time"]``."""
    return _parse_order_by(items, _RUNS)


def parse_experiment_filter(text: str | None) -> tuple[Comparison, ...]:
    """Parse a ``search_experiments`` filter (attributes and tags only)."""
    return _parse_filter(text, _EXPERIMENTS)


def parse_experiment_order_by(items: list[str] | None) -> tuple[OrderBy, ...]:
    """Parse ``search_experiments`` order_by items (attributes only)."""
    return _parse_order_by(items, _EXPERIMENTS)


def parse_registered_model_filter(text: str | None) -> tuple[Comparison, ...]:
    """Parse a ``search_registered_models`` filter (``name``, ``tags.<key>``, timestamps)."""
    return _parse_filter(text, _REGISTERED_MODELS)


def parse_registered_model_order_by(items: list[str] | None) -> tuple[OrderBy, ...]:
    return _parse_order_by(items, _REGISTERED_MODELS)


def parse_model_version_filter(text: str | None) -> tuple[Comparison, ...]:
    """Parse a ``search_model_versions`` filter (``name``, ``run_id``, ``version_number``, ...)."""
    return _parse_filter(text, _MODEL_VERSIONS)


def parse_model_version_order_by(items: list[str] | None) -> tuple[OrderBy, ...]:
    return _parse_order_by(items, _MODEL_VERSIONS)


def evaluate(value: object, clause: Comparison) -> bool:
    """Whether a Python value satisfies one clause (for searches over folded in-memory state)."""
    import re

    op, target = clause.op, clause.value
    if op == "IS NULL":
        return value is None
    if op == "IS NOT NULL":
        return value is not None
    if value is None:
        return False
    if op in ("LIKE", "ILIKE"):
        return like_match(str(target), str(value), op == "ILIKE")
    if op == "IN":
        return value in target  # type: ignore[operator]
    if op == "NOT IN":
        return value not in target  # type: ignore[operator]
    try:
        if op == "=":
            return value == target
        if op == "!=":
            return value != target
        if op == ">":
            return value > target  # type: ignore[operator]
        if op == ">=":
            return value >= target  # type: ignore[operator]
        if op == "<":
            return value < target  # type: ignore[operator]
        if op == "<=":
            return value <= target  # type: ignore[operator]
    except TypeError:
        return False
    raise ValueError(f"unknown comparator {op!r}")  # pragma: no cover - the parser emits only the above


def _regex_literal(ch: str) -> str:
    """A regex matching exactly ``ch`` that Python ``re`` and ``java.util.regex`` read alike."""
    if not ch.isascii():
        return ch  # no non-ASCII character is a metacharacter in either dialect
    if ch.isalnum():
        return ch
    if ch.isprintable() and ch != " ":
        return "\\" + ch  # both dialects read backslash + ASCII punctuation as that literal
    return f"\\x{ord(ch):02x}"  # space and control characters, e.g. NUL


def like_to_regex(pattern: str, case_insensitive: bool) -> str:
    """Translate a SQL LIKE pattern into an anchored regex: the reference meaning of LIKE/ILIKE.

    ``%`` matches any run of characters (newlines included), ``_`` exactly one character, and a
    backslash escapes ``%``, ``_`` or ``\\`` (Spark's default LIKE escape); any other backslash is
    literal. Everything else matches itself. The result works with Python ``re.search`` and
    Spark's ``rlike`` (Java regex), both of which search rather than match the whole string.

    Both are backtracking engines, in which this regex takes time polynomial in the value's
    length (the number of ``%`` is the exponent), so searches use :func:`like_match` (Python) and
    :func:`like_to_linear_regex` (Spark) instead, which agree with it exactly.
    """
    if not isinstance(pattern, str):
        got = _show(type(pattern).__name__)
        raise InvalidArgument(f"LIKE pattern must be a string, got {got}")
    # s: "." spans newlines like SQL's %; i+u: Unicode-aware case folding (u is Java's UNICODE_CASE,
    # accepted and redundant in Python).
    out = ["(?isu)^" if case_insensitive else "(?s)^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pattern[i + 1 : i + 2] in ("%", "_", "\\"):
            out.append(_regex_literal(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            if out[-1] != ".*":  # collapse %% to keep backtracking down
                out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(_regex_literal(ch))
        i += 1
    # "(?!.)" under DOTALL is "true end of input" in both dialects; "$" would also match before a
    # trailing newline, and Python's \Z is Java's \z (Java's \Z differs), so neither is portable.
    out.append("(?!.)")
    return "".join(out)


def _like_segments(pattern: str) -> list[list[str]]:
    """The pattern split at each unescaped ``%``: per segment, one regex per character (``_`` is
    ``.``), with the escape rule of :func:`like_to_regex`."""
    if not isinstance(pattern, str):
        got = _show(type(pattern).__name__)
        raise InvalidArgument(f"LIKE pattern must be a string, got {got}")
    segments: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pattern[i + 1 : i + 2] in ("%", "_", "\\"):
            segments[-1].append(_regex_literal(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            segments.append([])
        else:
            segments[-1].append("." if ch == "_" else _regex_literal(ch))
        i += 1
    return segments


def like_match(pattern: str, value: str, case_insensitive: bool) -> bool:
    """Whether ``value`` is LIKE (ILIKE) ``pattern``, in time linear in the value's length.

    The pattern's first segment (before any ``%``) must start the value and its last segment end
    it; each segment in between is found at its leftmost place after the previous one, which is
    exact (see :func:`like_to_linear_regex`). Each segment is a fixed-width regex without
    quantifiers, searched once: at most (value length x segment length) steps.
    """
    import re

    flags = re.S | (re.I if case_insensitive else 0)
    segments = _like_segments(pattern)
    compiled = [re.compile(_segment_regex(s), flags) for s in segments]
    if len(segments) == 1:
        return compiled[0].fullmatch(value) is not None
    first, last = len(segments[0]), len(segments[-1])
    end = len(value) - last  # where the last segment must start
    if end < first or not compiled[0].match(value):
        return False
    position = first
    for segment, regex in zip(segments[1:-1], compiled[1:-1]):
        if not segment:  # %% is one %
            continue
        found = regex.search(value, position, end)
        if found is None:
            return False
        position = found.end()
    return compiled[-1].fullmatch(value, end) is not None


def _segment_regex(pieces: list[str]) -> str:
    """One segment's regex, each run of ``.`` written ``.{n}`` (one regex node however long)."""
    out: list[str] = []
    run = 0
    for piece in pieces + [""]:
        if piece == ".":
            run += 1
            continue
        if run:
            out.append("." if run == 1 else f".{{{run}}}")
            run = 0
        out.append(piece)
    return "".join(out)


def like_to_linear_regex(pattern: str, case_insensitive: bool) -> str:
    """The LIKE pattern of :func:`like_to_regex` as a regex matched in time linear in the value.

    A backtracking engine (``java.util.regex`` behind Spark's ``like``/``rlike``, Python ``re``)
    runs ``.*a.*a.*b`` in time polynomial in the value's length, with the number of ``%`` as the
    exponent. This regex is ``^S0(?>.*?S1)...(?>.*?Sk-1).*Sk(?!.)`` for the segments ``S0..Sk``
    between the ``%``: each middle segment is found at its leftmost place after the previous one,
    inside an atomic group that is never re-entered, so every segment is searched once, left to
    right, and a match costs at most (value length x longest segment) steps.

    Leftmost-first is exact, not a heuristic. Every segment (literals and ``_``) matches a fixed
    number of characters, so of all the places a segment can start at or after a position, the
    leftmost one also ends first. By induction, if the value matches at all, each greedy segment
    ends no later than the same segment in any matching assignment; the last segment must end
    the value, and it still fits after the greedy ones. The converse is immediate.

    Same dialect as :func:`like_to_regex` (flags, escapes, ``(?!.)`` end anchor), plus atomic
    groups ``(?>...)``, lazy ``.*?`` and counted ``.{n}``: ``java.util.regex`` and Python 3.11+
    read it alike (Python 3.10 has no atomic groups; :func:`like_match` needs none).
    """
    segments = [_segment_regex(s) for s in _like_segments(pattern)]
    out = ["(?isu)^" if case_insensitive else "(?s)^", segments[0]]
    if len(segments) == 1:
        out.append("(?!.)")
        return "".join(out)
    out += [f"(?>.*?{segment})" for segment in segments[1:-1] if segment]  # %% is one %
    if segments[-1]:
        out.append(f".*{segments[-1]}(?!.)")
    return "".join(out)
