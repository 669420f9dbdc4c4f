"""The search-string grammar: filters, order_by, LIKE translation, hostile input. No Spark."""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltaflow.errors import InvalidArgument
from deltaflow.tracking._search import (
    DATASET_KEYS,
    EXPERIMENT_NUMERIC_ATTRIBUTES,
    EXPERIMENT_STRING_ATTRIBUTES,
    MAX_FILTER_LENGTH,
    RUN_NUMERIC_ATTRIBUTES,
    RUN_STRING_ATTRIBUTES,
    Comparison,
    OrderBy,
    like_to_regex,
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_run_filter,
    parse_run_order_by,
)

C = Comparison
NUM_OPS = ("=", "!=", ">", ">=", "<", "<=")
STR_OPS = ("=", "!=", "LIKE", "ILIKE")
LIST_OPS = ("IN", "NOT IN")
NULL_OPS = ("IS NULL", "IS NOT NULL")
ALL_OPS = NUM_OPS + ("LIKE", "ILIKE") + LIST_OPS + NULL_OPS


def run1(text: str) -> Comparison:
    (clause,) = parse_run_filter(text)
    return clause


def error_of(fn, arg) -> str:
    with pytest.raises(InvalidArgument) as info:
        fn(arg)
    assert type(info.value) is InvalidArgument
    return str(info.value)


def rendered_clause(ident: str, op: str, numeric: bool) -> str:
    """A syntactically valid clause for ``op``, with a value of the kind the entity needs."""
    if op in NULL_OPS:
        return f"{ident} {op}"
    if op in LIST_OPS:
        return f"{ident} {op} ('a', 'b')"
    return f"{ident} {op} {'42' if numeric else repr('v')}"


def expected_value(op: str, numeric_kind: type | None):
    if op in NULL_OPS:
        return None
    if op in LIST_OPS:
        return ("a", "b")
    return numeric_kind(42) if numeric_kind else "v"


# (parser, identifier, entity, canonical key, allowed comparators, numeric value type or None)
MATRIX = (
    [(parse_run_filter, "metrics.acc", "metric", "acc", NUM_OPS, float)]
    + [(parse_run_filter, f"{p}.k", e, "k", STR_OPS + NULL_OPS, None)
       for p, e in (("params", "param"), ("tags", "tag"))]
    + [(parse_run_filter, f"attributes.{a}", "attribute", a,
        STR_OPS + (LIST_OPS if a == "run_id" else ()), None) for a in RUN_STRING_ATTRIBUTES]
    + [(parse_run_filter, f"attributes.{a}", "attribute", a, NUM_OPS, int)
       for a in RUN_NUMERIC_ATTRIBUTES]
    + [(parse_run_filter, f"datasets.{k}", "dataset", k, STR_OPS + LIST_OPS, None)
       for k in DATASET_KEYS]
    + [(parse_experiment_filter, f"attribute.{a}", "attribute", a,
        STR_OPS + (LIST_OPS if a == "experiment_id" else ()), None)
       for a in EXPERIMENT_STRING_ATTRIBUTES]
    + [(parse_experiment_filter, f"attribute.{a}", "attribute", a, NUM_OPS, int)
       for a in EXPERIMENT_NUMERIC_ATTRIBUTES]
    + [(parse_experiment_filter, "tags.k", "tag", "k", STR_OPS + NULL_OPS, None)]
)
MATRIX_CASES = [
    pytest.param(fn, ident, entity, key, allowed, kind, op, id=f"{fn.__name__}:{ident}:{op}")
    for fn, ident, entity, key, allowed, kind in MATRIX
    for op in ALL_OPS
]


# ---------------------------------------------------------------- every entity x every comparator
@pytest.mark.parametrize("fn,ident,entity,key,allowed,kind,op", MATRIX_CASES)
def test_entity_comparator_matrix(fn, ident, entity, key, allowed, kind, op):
    text = rendered_clause(ident, op, numeric=kind is not None)
    if op in allowed:
        assert fn(text) == (C(entity, key, op, expected_value(op, kind)),)
    else:
        message = error_of(fn, text)
        assert "allow" in message and ", ".join(allowed) in message
        assert f"found {op}" in message
        assert f"at position {len(ident) + 1}" in message  # points at the comparator


def test_metric_message_lists_numeric_comparators():
    message = error_of(parse_run_filter, "metrics.acc LIKE 5")
    assert "metrics allow =, !=, >, >=, <, <=" in message


def test_in_on_other_string_attribute_names_the_list_attribute():
    assert "only with attributes.run_id" in error_of(parse_run_filter, "status IN ('a')")
    assert "only with attributes.experiment_id" in error_of(parse_experiment_filter,
                                                           "name IN ('a')")


def test_is_null_hint_names_the_nullable_entities():
    assert "only with params, tags" in error_of(parse_run_filter, "metrics.m IS NULL")
    assert "only with tags" in error_of(parse_experiment_filter, "name IS NULL")


def test_empty_and_none_filters_mean_no_condition():
    for fn in (parse_run_filter, parse_experiment_filter):
        assert fn(None) == ()
        assert fn("") == ()
        assert fn("  \n\t ") == ()


def test_conjunction_in_order():
    got = parse_run_filter("metrics.acc > 0.9 AND params.lr = '0.1' and tags.team LIKE 'ml%'")
    assert got == (C("metric", "acc", ">", 0.9), C("param", "lr", "=", "0.1"),
                   C("tag", "team", "LIKE", "ml%"))


def test_nodes_are_frozen_and_hashable():
    clause = run1("metrics.a > 1")
    with pytest.raises(AttributeError):
        clause.key = "b"  # type: ignore[misc]
    assert len({clause, run1("metrics.a > 1.0")}) == 1


# --------------------------------------------------------------------------- prefixes, aliases
@pytest.mark.parametrize("prefix,entity", [
    ("metric", "metric"), ("metrics", "metric"), ("param", "param"), ("params", "param"),
    ("parameter", "param"), ("parameters", "param"), ("tag", "tag"), ("tags", "tag"),
    ("`params`", "param"), ("`metrics`", "metric"),
])
def test_run_prefix_aliases(prefix, entity):
    value = "1" if entity == "metric" else "'1'"
    expected = 1.0 if entity == "metric" else "1"
    assert run1(f"{prefix}.x = {value}") == C(entity, "x", "=", expected)


@pytest.mark.parametrize("prefix", ["attribute", "attributes", "attr", "run", "`attributes`", ""])
def test_attribute_prefix_aliases_and_bare_names(prefix):
    ident = f"{prefix}.status" if prefix else "status"
    assert run1(f"{ident} = 'FINISHED'") == C("attribute", "status", "=", "FINISHED")


@pytest.mark.parametrize("prefix", ["dataset", "datasets"])
def test_dataset_prefix_aliases(prefix):
    assert run1(f"{prefix}.name = 'train'") == C("dataset", "name", "=", "train")


@pytest.mark.parametrize("alias,canonical", [
    ("created", "start_time"), ("Created", "start_time"), ("`run name`", "run_name"),
    ('"Run name"', "run_name"), ("`Run Name`", "run_name"),
    ("attributes.created", "start_time"), ("attributes.`run name`", "run_name"),
])
def test_mlflow_attribute_aliases_map_to_canonical_names(alias, canonical):
    value = "5" if canonical == "start_time" else "'r'"
    expected = 5 if canonical == "start_time" else "r"
    assert run1(f"{alias} = {value}").key == canonical
    assert run1(f"{alias} = {value}").value == expected


@pytest.mark.parametrize("text,fragment", [
    ("foo.a = 'x'", 'unknown entity prefix "foo"'),
    ("PARAMS.a = 'x'", 'unknown entity prefix "PARAMS"'),  # MLflow: prefixes are case-sensitive
    ("param.a = 'x' AND metric.b > 1 AND Tags.c = 'y'", 'unknown entity prefix "Tags"'),
    ("run_uuid = 'x'", 'unknown run attribute "run_uuid"'),
    ("attributes.experiment_id = '1'", 'unknown run attribute "experiment_id"'),
    ("attributes.Status = 'x'", 'unknown run attribute "Status"'),
    ("acc > 1", 'unknown run attribute "acc"'),
    ("datasets.foo = 'x'", 'unknown dataset field "foo"; allowed: name, digest, context'),
    ("'run_id' = 'x'", "expected an identifier"),
    ("params. = 'x'", "expected a key after"),
    ("params.`` = 'x'", "empty key"),
    ("params.a-b = 'x'", "expected a comparator"),  # dashes need quoting, as in MLflow
    ("params.a/b = 'x'", "expected a comparator"),
    ("params.a b = 'x'", "expected a comparator"),
])
def test_bad_identifiers(text, fragment):
    assert fragment in error_of(parse_run_filter, text)


def test_unknown_attribute_message_lists_the_allowed_ones():
    message = error_of(parse_run_filter, "bogus = 'x'")
    for name in RUN_STRING_ATTRIBUTES + RUN_NUMERIC_ATTRIBUTES:
        assert name in message
    assert "metrics., params., tags., attributes., datasets." in message


def test_experiment_prefixes_follow_mlflow():
    assert parse_experiment_filter("name = 'a' AND attribute.name = 'b' AND tag.t = 'c'") == (
        C("attribute", "name", "=", "a"), C("attribute", "name", "=", "b"), C("tag", "t", "=", "c"))
    for text in ("attributes.name = 'x'", "params.p = 'x'", "metrics.m > 1", "datasets.name = 'x'"):
        assert "allowed: attribute., tag., tags." in error_of(parse_experiment_filter, text)


def test_experiment_attributes():
    assert parse_experiment_filter(
        "experiment_id IN ('1', '2') AND creation_time >= 10 AND last_update_time < 2e3"
        " AND lifecycle_stage = 'active'"
    ) == (C("attribute", "experiment_id", "IN", ("1", "2")),
          C("attribute", "creation_time", ">=", 10), C("attribute", "last_update_time", "<", 2000),
          C("attribute", "lifecycle_stage", "=", "active"))
    assert "unknown experiment attribute" in error_of(parse_experiment_filter, "status = 'x'")


# -------------------------------------------------------------------------------------- quoting
@pytest.mark.parametrize("text,key", [
    ('metrics."my metric" > 1', "my metric"),
    ("params.`a.b` = 'x'", "a.b"),
    ("params.'single quoted' = 'x'", "single quoted"),
    ("tags.mlflow.runName = 'x'", "mlflow.runName"),
    ("tags.`path/with-dash and space` = 'x'", "path/with-dash and space"),
    ("tags.`back``tick` = 'x'", "back`tick"),
    ('tags."dq""inside" = \'x\'', 'dq"inside'),
    ("tags.`ünïcødé` = 'x'", "ünïcødé"),
    ("tags.ключ = 'x'", "ключ"),
    ("params.1st = 'x'", "1st"),
    ("params.A = 'x'", "A"),  # keys keep their case
])
def test_key_quoting(text, key):
    assert run1(text).key == key


@pytest.mark.parametrize("literal,value", [
    ("'x'", "x"),
    ('"x"', "x"),
    ("''", ""),
    ("'it''s'", "it's"),
    ("'it\\'s'", "it's"),
    ('"say ""hi"""', 'say "hi"'),
    ('"a\\"b"', 'a"b'),
    ("'a\"b'", 'a"b'),
    ('"a\'b"', "a'b"),
    ("'back\\\\slash'", "back\\slash"),
    ("'ends with \\\\'", "ends with \\"),
    ("'100\\%'", "100\\%"),  # unknown escapes stay, so LIKE escapes reach like_to_regex
    ("'C:\\dir'", "C:\\dir"),
    ("'multi\nline'", "multi\nline"),
    ("'nul\x00inside'", "nul\x00inside"),
    ("'AND OR ; -- ( )'", "AND OR ; -- ( )"),
])
def test_string_literals(literal, value):
    assert run1(f"params.p = {literal}").value == value


@pytest.mark.parametrize("text", [
    "params.a = 'x",
    'params.a = "x',
    "params.a = 'x''",
    "params.a = 'x\\'",
    "params.`a = 'x'",
    'params."a = \'x\'',
    "attributes.run_id IN ('a', 'b)",
])
def test_unbalanced_quotes(text):
    assert "unterminated quoted text" in error_of(parse_run_filter, text)


def test_backtick_is_not_a_value_quote():
    assert "single or double quotes" in error_of(parse_run_filter, "params.a = `x`")
    assert "single or double quotes" in error_of(parse_run_filter, "params.a = x")


# -------------------------------------------------------------------------- case-insensitivity
@pytest.mark.parametrize("text,op", [
    ("params.a like 'x'", "LIKE"), ("params.a Like 'x'", "LIKE"), ("params.a ilike 'x'", "ILIKE"),
    ("params.a iLiKe 'x'", "ILIKE"), ("params.a is null", "IS NULL"),
    ("params.a Is Not Null", "IS NOT NULL"), ("params.a IS\n\tNOT   NULL", "IS NOT NULL"),
    ("run_id in ('a')", "IN"), ("run_id not in ('a')", "NOT IN"), ("run_id NoT\nIn('a')", "NOT IN"),
])
def test_keywords_are_case_insensitive(text, op):
    assert run1(text).op == op


@pytest.mark.parametrize("joiner", ["AND", "and", "And", "aNd"])
def test_and_is_case_insensitive(joiner):
    assert len(parse_run_filter(f"params.a = 'x' {joiner} params.b = 'y'")) == 2


def test_whitespace_is_optional_around_symbols_and_quotes():
    assert parse_run_filter("params.a='x'AND metrics.b>=-1 AND\nrun_id IN('r')") == (
        C("param", "a", "=", "x"), C("metric", "b", ">=", -1.0),
        C("attribute", "run_id", "IN", ("r",)))


# ------------------------------------------------------------------------------------- IN lists
@pytest.mark.parametrize("text,value", [
    ("run_id IN ('a')", ("a",)),
    ("run_id IN ('a','b')", ("a", "b")),
    ("run_id IN ( 'a' ,\n\"b\" , 'c' )", ("a", "b", "c")),
    ("run_id IN ('a',)", ("a",)),  # MLflow (ast.literal_eval) accepts a trailing comma
    ("run_id IN ('it''s', 'x,y', ')')", ("it's", "x,y", ")")),
    ("datasets.context NOT IN ('train', 'eval')", ("train", "eval")),
])
def test_in_lists(text, value):
    assert run1(text).value == value


@pytest.mark.parametrize("text,fragment", [
    ("run_id IN ()", "the IN list is empty"),
    ("run_id IN ( )", "the IN list is empty"),
    ("run_id IN (,)", "expected a quoted string in the IN list"),
    ("run_id IN ('a',,'b')", "expected a quoted string in the IN list"),
    ("run_id IN (1, 2)", "expected a quoted string in the IN list"),
    ("run_id IN (a)", "expected a quoted string in the IN list"),
    ("run_id IN ('a' 'b')", "expected , or ) in the IN list"),
    ("run_id IN ('a'", "expected , or ) in the IN list"),
    ("run_id IN 'a'", "parenthesised list"),
    ("run_id NOT IN 'a'", "parenthesised list"),
    ("run_id IN", "parenthesised list"),
    ("run_id = ('a')", "single or double quotes"),
    ("params.p IN ('a')", "params allow"),
])
def test_bad_in_lists(text, fragment):
    assert fragment in error_of(parse_run_filter, text)


# -------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("literal,value", [
    ("0", 0.0), ("42", 42.0), ("-3", -3.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("-.25", -0.25),
    ("1e3", 1000.0), ("1E3", 1000.0), ("1e-3", 0.001), ("2.5E+2", 250.0), ("-1.5e-2", -0.015),
    ("1e400", float("inf")), ("123456789012345678901234567890", 1.2345678901234568e29),
])
def test_metric_numbers(literal, value):
    clause = run1(f"metrics.m > {literal}")
    assert clause.value == value and isinstance(clause.value, float)


@pytest.mark.parametrize("literal,fragment", [
    ("+5", "expected a number"), ("0x10", "malformed number"), ("1_000", "malformed number"),
    ("1.2.3", "malformed number"), ("5abc", "malformed number"), ("1e", "malformed exponent"),
    ("1e+", "malformed exponent"), ("-", "expected a number"), ("--1", "expected a number"),
    (".", "expected a number"), ("inf", "expected a number"), ("nan", "expected a number"),
    ("'1'", "metrics compare with a number, not a quoted string"),
    ('"1"', "metrics compare with a number"), ("`1`", "metrics compare with a number"),
    ("١٢", "expected a number"), ("", "expected a number"),
])
def test_bad_metric_numbers(literal, fragment):
    assert fragment in error_of(parse_run_filter, f"metrics.m > {literal}")


@pytest.mark.parametrize("literal,value", [
    ("1700000000000", 1700000000000), ("0", 0), ("-1", -1), ("1e3", 1000), ("2.0", 2),
    ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -(2**63)),
])
def test_numeric_attributes_are_ints(literal, value):
    clause = run1(f"attributes.start_time >= {literal}")
    assert clause.value == value and type(clause.value) is int


@pytest.mark.parametrize("literal,fragment", [
    ("1.5", "whole number"), ("9223372036854775808", "out of range"), ("1e19", "out of range"),
    ("1" * 5000, "out of range"), ("1e999", "out of range"), ("'5'", "compares with a number"),
])
def test_bad_numeric_attribute_values(literal, fragment):
    assert fragment in error_of(parse_run_filter, f"end_time < {literal}")


@pytest.mark.parametrize("text", ["params.p = 5", "tags.t = -1.5", "run_id = 3",
                                  "datasets.name = .5"])
def test_number_where_string_is_needed(text):
    assert "with a quoted string such as '1', not a number" in error_of(parse_run_filter, text)


# ------------------------------------------------------------------------------------- order_by
@pytest.mark.parametrize("item,expected", [
    ("metrics.acc DESC", OrderBy("metric", "acc", False)),
    ("metrics.acc", OrderBy("metric", "acc", True)),
    ("metrics.acc asc", OrderBy("metric", "acc", True)),
    ("  metrics.acc \t Desc  ", OrderBy("metric", "acc", False)),
    ("params.x ASC", OrderBy("param", "x", True)),
    ("tags.`a b` desc", OrderBy("tag", "a b", False)),
    ('metrics."a.b" DESC', OrderBy("metric", "a.b", False)),
    ("metric.a.b", OrderBy("metric", "a.b", True)),
    ("attributes.start_time", OrderBy("attribute", "start_time", True)),
    ("start_time DESC", OrderBy("attribute", "start_time", False)),
    ("created", OrderBy("attribute", "start_time", True)),
    ("attr.run_name", OrderBy("attribute", "run_name", True)),
    ("`run name`", OrderBy("attribute", "run_name", True)),
] + [(f"attributes.{a}", OrderBy("attribute", a, True))
     for a in RUN_STRING_ATTRIBUTES + RUN_NUMERIC_ATTRIBUTES])
def test_run_order_by(item, expected):
    assert parse_run_order_by([item]) == (expected,)


def test_order_by_keeps_item_order_and_accepts_tuple_or_none():
    assert parse_run_order_by(("metrics.a", "params.b DESC")) == (
        OrderBy("metric", "a", True), OrderBy("param", "b", False))
    assert parse_run_order_by(None) == () and parse_run_order_by([]) == ()


@pytest.mark.parametrize("item,fragment", [
    ("metrics.acc DESC ASC", "unexpected text after the sort direction"),
    ("metrics.acc up", "expected ASC, DESC or the end"),
    ("metrics.acc descending", "expected ASC, DESC or the end"),
    ("metrics.a, metrics.b", "expected ASC, DESC or the end"),
    ("metrics.a DESC, metrics.b", "unexpected text after the sort direction"),
    ("", "empty order_by clause"),
    ("   ", "empty order_by clause"),
    ("DESC", 'unknown run attribute "DESC"'),
    ("datasets.name", "cannot order runs by datasets"),
    ("attributes.bogus", 'unknown run attribute "bogus"'),
    ("foo.bar", 'unknown entity prefix "foo"'),
    ("metrics.`a", "unterminated quoted text"),
    ("metrics.a = 1", "expected ASC, DESC or the end"),
])
def test_bad_run_order_by(item, fragment):
    assert fragment in error_of(parse_run_order_by, [item])


def test_experiment_order_by():
    assert parse_experiment_order_by(
        ["name", "attribute.experiment_id DESC", "creation_time asc", "last_update_time"]
    ) == (OrderBy("attribute", "name", True), OrderBy("attribute", "experiment_id", False),
          OrderBy("attribute", "creation_time", True),
          OrderBy("attribute", "last_update_time", True))
    assert "cannot order experiments by tags" in error_of(parse_experiment_order_by, ["tags.t"])
    assert "unknown experiment attribute" in error_of(parse_experiment_order_by, ["start_time"])


@pytest.mark.parametrize("items", ["metrics.acc DESC", 5, {"metrics.a": 1}, b"metrics.a"])
def test_order_by_must_be_a_list(items):
    assert "must be a list of strings" in error_of(parse_run_order_by, items)


@pytest.mark.parametrize("item", [5, None, b"metrics.a", ["metrics.a"]])
def test_order_by_items_must_be_strings(item):
    assert "must be a string" in error_of(parse_run_order_by, [item])


# ------------------------------------------------------------------------------ error positions
@pytest.mark.parametrize("text,pos,near", [
    ("params.a = 'x' OR 1=1", 15, '"OR 1=1"'),
    ("params.a = 'x'; DROP TABLE runs", 14, '"; DROP TABLE runs"'),
    ("params.a = 'x", 11, "\"'x\""),
    ("foo.a = 'x'", 0, '"foo.a = \'x\'"'),
    ("metrics.m >= 1 AND metrics.n => 2", 29, '"=> 2"'),
    ("metrics.m > 1 AND tags.t = 'x' AND datasets.bad = 'y'", 44, '"bad = \'y\'"'),
    ("metrics.m > 1 AND", None, "at the end"),
    ("metrics.m >", None, "at the end"),
])
def test_error_messages_say_where(text, pos, near):
    message = error_of(parse_run_filter, text)
    if pos is None:
        assert f"at position {len(text)} at the end" in message
    else:
        assert f"at position {pos} near {near}" in message


def test_or_gets_a_specific_hint():
    message = error_of(parse_run_filter, "params.a = 'x' or params.b = 'y'")
    assert "expected AND or the end of the filter (OR is not supported)" in message


def test_excerpt_is_clipped_and_escaped():
    text = "params.a = 'x' " + "Z" * 500
    message = error_of(parse_run_filter, text)
    assert "Z" * 24 + '..."' in message and "Z" * 25 not in message
    message = error_of(parse_run_filter, "params.a = 'x' \x00\x01\n")
    assert "\x00" not in message and "\\u0000\\u0001\\n" in message


# --------------------------------------------------------------------------- hostile inputs
@pytest.mark.parametrize("text,fragment", [
    ("params.a = 'x' OR 1=1", "OR is not supported"),
    ("params.a = 'x'; DROP TABLE runs", "expected AND or the end"),
    ("params.a = 'x' -- comment", "expected AND or the end"),
    ("params.a = 'x' /* c */", "expected AND or the end"),
    ("(params.a = 'x')", "parentheses are not supported"),
    ("params.a = 'x' AND (metrics.b > 1)", "parentheses are not supported"),
    ("params.a = ('x')", "single or double quotes"),
    ("NOT params.a = 'x'", 'unknown run attribute "NOT"'),
    ("params.a = 'x' AND", "expected a comparison after AND"),
    ("AND params.a = 'x'", 'unknown run attribute "AND"'),
    ("params.a = 'x' AND AND params.b = 'y'", 'unknown run attribute "AND"'),
    ("params.a = 'x' params.b = 'y'", "expected AND or the end"),
    ("params.a = 'x' 'y'", "expected AND or the end"),
    ("metrics.m > 1 2", "expected AND or the end"),
    ("params.a == 'x'", 'unknown comparator "=="'),
    ("params.a <> 'x'", 'unknown comparator "<>"'),
    ("params.a =! 'x'", 'unknown comparator "=!"'),
    ("params.a NOT LIKE 'x'", "NOT LIKE is not supported"),
    ("params.a IS 'x'", "expected NULL or NOT NULL after IS"),
    ("params.a IS NOT 'x'", "expected NULL or NOT NULL after IS"),
    ("params.a RLIKE 'x'", "expected a comparator"),
    ("params.a", "expected a comparator"),
    ("params.a 'x'", "expected a comparator"),
    ("\x00", "expected an identifier"),
    ("params.a\x00= 'x'", "expected a comparator"),
    ("ñ", 'unknown run attribute "ñ"'),
    ("=", "expected an identifier"),
])
def test_hostile_and_malformed_filters(text, fragment):
    assert fragment in error_of(parse_run_filter, text)


def test_megabyte_input_is_refused_by_length():
    text = "params.a = '" + "x" * 1_000_000 + "'"
    message = error_of(parse_run_filter, text)
    assert f"{len(text)} characters long; the limit is {MAX_FILTER_LENGTH}" in message
    assert len(message) < 200
    assert "order_by clause" in error_of(parse_run_order_by, ["metrics." + "a" * 1_000_000])
    assert "limit" in error_of(parse_experiment_filter, " " * (MAX_FILTER_LENGTH + 1))


def test_inputs_up_to_the_limit_parse():
    clause = "params.p = 'x' AND "
    text = clause * ((MAX_FILTER_LENGTH - 20) // len(clause)) + "params.p = 'x'"
    text = text.ljust(MAX_FILTER_LENGTH)
    assert len(text) == MAX_FILTER_LENGTH
    assert len(parse_run_filter(text)) == text.count("params.p") > 400
    assert parse_run_filter(" " * MAX_FILTER_LENGTH) == ()


@pytest.mark.parametrize("bad", [5, 1.5, b"params.a = 'x'", ["params.a = 'x'"], object(), True])
def test_non_string_input_is_invalid_argument(bad):
    for fn in (parse_run_filter, parse_experiment_filter):
        assert "must be a string" in error_of(fn, bad)


def test_long_user_text_never_floods_the_message():
    long_key = "k" * 5000
    for text in (f"attributes.{long_key} = 'x'", f"{long_key} = 'x'", f"foo{long_key}.a = 'x'",
                 f"params.a = 'x' {long_key}", f"datasets.{long_key} = 'x'"):
        message = error_of(parse_run_filter, text)
        assert "k" * 40 not in message and len(message) < 500


# ------------------------------------------------------------------------ LIKE -> regex
@pytest.mark.parametrize("pattern,ci,matches,rejects", [
    ("abc", False, ["abc"], ["abcd", "xabc", "ABC", "abc\n"]),
    ("a%", False, ["a", "abc", "a\nb"], ["ba", "A"]),
    ("%a", False, ["a", "xxa", "\na"], ["ab"]),
    ("%mid%", False, ["mid", "a mid b"], ["mi d"]),
    ("a_c", False, ["abc", "a.c", "a\nc"], ["ac", "abbc"]),
    ("a.c", False, ["a.c"], ["abc"]),
    ("100\\%", False, ["100%"], ["1000", "100\\%"]),
    ("a\\_b", False, ["a_b"], ["axb"]),
    ("a\\\\b", False, ["a\\b"], ["a\\\\b"]),
    ("C:\\dir", False, ["C:\\dir"], ["C:dir"]),
    ("trail\\", False, ["trail\\"], ["trail"]),
    ("(a|b)*[x]{2}$^+?", False, ["(a|b)*[x]{2}$^+?"], ["a", "xx"]),
    ("ABC%", True, ["abcdef", "ABC", "aBc"], ["xabc"]),
    ("straße", True, ["STRAßE"], ["strasse"]),
    ("nul\x00_", False, ["nul\x00x"], ["nul"]),
    ("", False, [""], ["a"]),
    ("%", False, ["", "anything\n"], []),
    ("%%%", False, ["x"], []),
    ("😀_", False, ["😀x"], ["😀"]),
])
def test_like_to_regex(pattern, ci, matches, rejects):
    regex = like_to_regex(pattern, ci)
    for text in matches:
        assert re.search(regex, text), (regex, text)
    for text in rejects:
        assert not re.search(regex, text), (regex, text)


JAVA_SAFE = re.compile(
    r"\(\?(?:s|isu)\)\^"  # flags, start anchor
    r"(?:\\x[0-9a-f]{2}|\\[!-/:-@\[-`{-~]|\.\*|\.|[^\\.])*"  # escapes, wildcards, literals
    r"\(\?!\.\)"  # end anchor
)


@given(st.text(), st.booleans())
@settings(max_examples=300)
def test_like_regex_uses_only_constructs_java_and_python_share(pattern, ci):
    # Escapes are limited to backslash + ASCII punctuation and \xHH: literals in java.util.regex.
    regex = like_to_regex(pattern, ci)
    assert JAVA_SAFE.fullmatch(regex), regex
    re.compile(regex)


def reference_like(pattern: str, text: str, ci: bool) -> bool:
    tokens: list[str | None] = []  # None = %, "" = _, else a literal character
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and pattern[i + 1 : i + 2] in ("%", "_", "\\"):
            tokens.append(pattern[i + 1])
            i += 2
            continue
        tokens.append({"%": None, "_": ""}.get(pattern[i], pattern[i]))
        i += 1
    if ci:
        text = text.lower()
        tokens = [t.lower() if t else t for t in tokens]

    @lru_cache(maxsize=None)
    def match(ti: int, si: int) -> bool:
        if ti == len(tokens):
            return si == len(text)
        tok = tokens[ti]
        if tok is None:
            return any(match(ti + 1, k) for k in range(si, len(text) + 1))
        if si < len(text) and (tok == "" or tok == text[si]):
            return match(ti + 1, si + 1)
        return False

    return match(0, 0)


@given(st.text(alphabet="ab%_\\\n.", max_size=8), st.text(alphabet="ab%_\\\n.", max_size=8),
       st.booleans())
@settings(max_examples=500)
def test_like_regex_agrees_with_a_reference_matcher(pattern, text, ci):
    assert bool(re.search(like_to_regex(pattern, ci), text)) == reference_like(pattern, text, ci)


@given(st.text(alphabet="aAbB%_", max_size=6), st.text(alphabet="aAbB", max_size=6))
@settings(max_examples=200)
def test_ilike_regex_is_case_insensitive(pattern, text):
    expected = reference_like(pattern, text, True)
    assert bool(re.search(like_to_regex(pattern, True), text)) == expected


def test_like_to_regex_collapses_runs_of_percent():
    # "%%%%" must not become ".*.*.*.*", which backtracks polynomially on long values.
    assert like_to_regex("a%%%%b", False) == like_to_regex("a%b", False) == "(?s)^a.*b(?!.)"


def test_like_to_regex_rejects_non_strings():
    assert "must be a string" in error_of(lambda p: like_to_regex(p, False), 5)


# ------------------------------------------------------------ property: never anything else
def parse_or_invalid(fn, arg) -> tuple | InvalidArgument:
    try:
        result = fn(arg)
    except InvalidArgument as exc:  # anything else propagates and fails the test
        assert type(exc) is InvalidArgument
        return exc
    assert isinstance(result, tuple)
    return result


def assert_outcome(fn, arg, node_type) -> None:
    outcome = parse_or_invalid(fn, arg)
    text = "".join(arg) if isinstance(arg, list) else arg
    if isinstance(outcome, InvalidArgument):
        message = str(outcome)
        assert "position" in message or "must be" in message or "limit" in message
        assert not any(text[i : i + 101] in message for i in range(max(0, len(text) - 100)))
    else:
        assert all(isinstance(node, node_type) for node in outcome)


FRAGMENTS = st.sampled_from([
    "metrics.", "params.", "tags.", "attributes.", "datasets.", "attribute.", "run_id", "status",
    "start_time", "created", "name", "digest", "a", "b.c", "`", "'", '"', "\\", "''", " ", "\n",
    "=", "!=", ">=", "<", "==", "<>", "-", ".", "1", "1e5", "-2.5", "LIKE", "ilike", "IN", "NOT",
    "IS", "NULL", "AND", "and", "OR", "(", ")", ",", ";", "--", "\x00", "ñ", "DESC", "asc",
])
FUZZ = st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("utf-8", errors="replace")),
    st.lists(FRAGMENTS, max_size=12).map("".join),
)


@given(FUZZ)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_text_gives_comparisons_or_invalid_argument(text):
    assert_outcome(parse_run_filter, text, Comparison)
    assert_outcome(parse_experiment_filter, text, Comparison)


@given(FUZZ)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_text_gives_order_by_or_invalid_argument(text):
    assert_outcome(parse_run_order_by, [text], OrderBy)
    assert_outcome(parse_experiment_order_by, [text], OrderBy)


# ----------------------------------------------------------------- property: round trip
KEYS = st.text(min_size=1, max_size=12)
WS0 = st.text(alphabet=" \t\n\r", max_size=2)
WS1 = st.text(alphabet=" \t\n\r", min_size=1, max_size=2)


def quote(text: str, q: str) -> str:
    return q + text.replace("\\", "\\\\").replace(q, q + q) + q


@st.composite
def rendered_key(draw, key: str) -> str:
    if all(c.isalnum() or c in "_." for c in key) and draw(st.booleans()):
        return key
    return quote(key, draw(st.sampled_from(["`", '"', "'"])))


@st.composite
def rendered_op(draw, op: str) -> str:
    words = [draw(st.sampled_from([w, w.lower(), w.capitalize()])) for w in op.split()]
    return draw(WS1).join(words)


@st.composite
def rendered_string(draw, value: str) -> str:
    return quote(value, draw(st.sampled_from(["'", '"'])))


@st.composite
def clause_text(draw, ident: str, op: str, value) -> str:
    keyword_op = op[0].isalpha()
    left = draw(WS1 if keyword_op else WS0)
    text = f"{ident}{left}{draw(rendered_op(op))}"
    if op in NULL_OPS:
        return text
    if isinstance(value, tuple):
        items = [draw(rendered_string(v)) for v in value]
        return f"{text}{draw(WS0)}({draw(WS0)}{(',' + draw(WS0)).join(items)})"
    if isinstance(value, str):
        return f"{text}{draw(WS0)}{draw(rendered_string(value))}"
    return f"{text}{draw(WS0)}{value!r}"


@st.composite
def attribute_ident(draw, prefixes: list[str], name: str) -> str:
    prefix = draw(st.sampled_from(prefixes + [""]))
    if not prefix:
        return name if name.isidentifier() else quote(name, draw(st.sampled_from(["`", '"'])))
    return f"{prefix}.{draw(rendered_key(name))}"


@st.composite
def run_clause(draw) -> tuple[str, Comparison]:
    kind = draw(st.sampled_from(["metric", "param", "tag", "str_attr", "num_attr", "dataset"]))
    if kind == "metric":
        key = draw(KEYS)
        ident = f"{draw(st.sampled_from(['metric', 'metrics']))}.{draw(rendered_key(key))}"
        op = draw(st.sampled_from(NUM_OPS))
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
        expected = C("metric", key, op, value)
    elif kind in ("param", "tag"):
        key = draw(KEYS)
        prefixes = (["param", "params", "parameter", "parameters"] if kind == "param"
                    else ["tag", "tags"])
        ident = f"{draw(st.sampled_from(prefixes))}.{draw(rendered_key(key))}"
        op = draw(st.sampled_from(STR_OPS + NULL_OPS))
        value = None if op in NULL_OPS else draw(st.text(max_size=12))
        expected = C(kind, key, op, value)
    elif kind == "str_attr":
        names = {a: a for a in RUN_STRING_ATTRIBUTES}
        names |= {"run name": "run_name", "Run Name": "run_name"}
        name = draw(st.sampled_from(sorted(names)))
        ident = draw(attribute_ident(["attribute", "attributes", "attr", "run"], name))
        op = draw(st.sampled_from(STR_OPS + (LIST_OPS if names[name] == "run_id" else ())))
        value = (tuple(draw(st.lists(st.text(max_size=6), min_size=1, max_size=3)))
                 if op in LIST_OPS else draw(st.text(max_size=12)))
        expected = C("attribute", names[name], op, value)
    elif kind == "num_attr":
        names = {"start_time": "start_time", "end_time": "end_time", "created": "start_time",
                 "Created": "start_time"}
        name = draw(st.sampled_from(sorted(names)))
        ident = draw(attribute_ident(["attribute", "attributes", "attr", "run"], name))
        op = draw(st.sampled_from(NUM_OPS))
        value = draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
        expected = C("attribute", names[name], op, value)
    else:
        key = draw(st.sampled_from(DATASET_KEYS))
        ident = f"{draw(st.sampled_from(['dataset', 'datasets']))}.{draw(rendered_key(key))}"
        op = draw(st.sampled_from(STR_OPS + LIST_OPS))
        value = (tuple(draw(st.lists(st.text(max_size=6), min_size=1, max_size=3)))
                 if op in LIST_OPS else draw(st.text(max_size=12)))
        expected = C("dataset", key, op, value)
    return draw(clause_text(ident, op, value)), expected


@st.composite
def experiment_clause(draw) -> tuple[str, Comparison]:
    kind = draw(st.sampled_from(["str_attr", "num_attr", "tag"]))
    if kind == "tag":
        key = draw(KEYS)
        ident = f"{draw(st.sampled_from(['tag', 'tags']))}.{draw(rendered_key(key))}"
        op = draw(st.sampled_from(STR_OPS + NULL_OPS))
        value = None if op in NULL_OPS else draw(st.text(max_size=12))
        return draw(clause_text(ident, op, value)), C("tag", key, op, value)
    names = EXPERIMENT_STRING_ATTRIBUTES if kind == "str_attr" else EXPERIMENT_NUMERIC_ATTRIBUTES
    name = draw(st.sampled_from(names))
    ident = draw(attribute_ident(["attribute"], name))
    if kind == "num_attr":
        op = draw(st.sampled_from(NUM_OPS))
        value = draw(st.integers(min_value=0, max_value=2**63 - 1))
    else:
        op = draw(st.sampled_from(STR_OPS + (LIST_OPS if name == "experiment_id" else ())))
        value = (tuple(draw(st.lists(st.text(max_size=6), min_size=1, max_size=3)))
                 if op in LIST_OPS else draw(st.text(max_size=12)))
    return draw(clause_text(ident, op, value)), C("attribute", name, op, value)


@st.composite
def conjunction(draw, clause_strategy) -> tuple[str, tuple[Comparison, ...]]:
    pairs = draw(st.lists(clause_strategy, min_size=1, max_size=4))
    text = draw(WS0) + pairs[0][0]
    for part, _ in pairs[1:]:
        text += draw(WS1) + draw(st.sampled_from(["AND", "and", "And"])) + draw(WS1) + part
    return text + draw(WS0), tuple(expected for _, expected in pairs)


@given(conjunction(run_clause()))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_run_filter_round_trip(case):
    text, expected = case
    assert parse_run_filter(text) == expected


@given(conjunction(experiment_clause()))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_experiment_filter_round_trip(case):
    text, expected = case
    assert parse_experiment_filter(text) == expected


@given(st.lists(st.tuples(st.sampled_from(["metric", "param", "tag"]), KEYS,
                          st.sampled_from([None, True, False])), max_size=4), st.data())
@settings(max_examples=200)
def test_run_order_by_round_trip(specs, data):
    items, expected = [], []
    for entity, key, ascending in specs:
        item = f"{entity}s.{data.draw(rendered_key(key))}"
        if ascending is not None:
            item += data.draw(WS1) + data.draw(st.sampled_from(["ASC", "asc"] if ascending
                                                               else ["DESC", "desc"]))
        items.append(data.draw(WS0) + item + data.draw(WS0))
        expected.append(OrderBy(entity, key, ascending is not False))
    assert parse_run_order_by(items) == tuple(expected)


def test_module_imports_only_the_stdlib_and_deltaflow_errors():
    import deltaflow.tracking._search as search

    tree = ast.parse(Path(search.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    # re: only evaluate() (in-memory searches of the registry and experiments) uses it, lazily
    assert imported == {"__future__", "json", "dataclasses", "typing", "re", "deltaflow.errors"}
