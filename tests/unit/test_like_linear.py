"""LIKE in linear time: ``like_match`` (Python) and ``like_to_linear_regex`` (Spark's rlike) against
the reference ``like_to_regex``, on random patterns and values and on the patterns that took a
backtracking matcher minutes on a 5,000-character value."""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaflow.tracking._search import Comparison, evaluate, like_to_regex

# Characters with a meaning somewhere: LIKE's wildcards and escape, regex metacharacters, a newline
# (which % and _ must span), case pairs, non-ASCII and a character outside the BMP.
PATTERN_CHARS = "ab%_\\\n.*$()AéÉ😀x"
VALUE_CHARS = "ab\\%_\n.*$()AéÉ😀x"
needs_atomic_groups = pytest.mark.skipif(sys.version_info < (3, 11), reason="Python re has (?>...) from 3.11")


@st.composite
def instances(draw: st.DrawFn, pattern: str) -> str:
    """A value the pattern matches (so that matches are as common as misses), then perhaps mutated."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pattern[i + 1 : i + 2] in ("%", "_", "\\"):
            out.append(pattern[i + 1])
            i += 2
            continue
        if ch == "%":
            out.append(draw(st.text(alphabet=VALUE_CHARS, max_size=4)))
        elif ch == "_":
            out.append(draw(st.sampled_from(VALUE_CHARS)))
        else:
            out.append(ch)
        i += 1
    value = "".join(out)
    if value and draw(st.booleans()):
        at = draw(st.integers(0, len(value) - 1))
        value = value[:at] + draw(st.text(alphabet=VALUE_CHARS, max_size=2)) + value[at + 1 :]
    return value


@st.composite
def pattern_and_value(draw: st.DrawFn) -> tuple[str, str]:
    pattern = draw(st.text(alphabet=PATTERN_CHARS, max_size=12))
    value = draw(st.one_of(instances(pattern), st.text(alphabet=VALUE_CHARS, max_size=12)))
    return pattern, value


def reference(pattern: str, value: str, ci: bool) -> bool:
    return re.search(like_to_regex(pattern, ci), value) is not None


@given(pattern_and_value(), st.booleans())
@settings(max_examples=3000, deadline=None)
def test_like_match_agrees_with_the_reference(case, ci):
    from deltaflow.tracking._search import like_match

    pattern, value = case
    assert like_match(pattern, value, ci) == reference(pattern, value, ci), (pattern, value, ci)


@needs_atomic_groups
@given(pattern_and_value(), st.booleans())
@settings(max_examples=3000, deadline=None)
def test_linear_regex_agrees_with_the_reference(case, ci):
    # Python's re reads atomic groups as java.util.regex does; tests/store/test_search_limits.py
    # runs the same regexes through Spark itself.
    from deltaflow.tracking._search import like_to_linear_regex

    pattern, value = case
    assert bool(re.search(like_to_linear_regex(pattern, ci), value)) == reference(pattern, value, ci)


# The linear regex: flags and anchor; the first segment; atomic groups (?>.*?S) for middle segments;
# then either the end anchor (no %) or, for a last segment, .*S and the end anchor.
LITERAL = r"(?:\\x[0-9a-f]{2}|\\[!-/:-@\[-`{-~]|\.\{\d+\}|\.|[^\\.()*?{}])"
LINEAR_SHAPE = re.compile(
    rf"\(\?(?:s|isu)\)\^{LITERAL}*"
    rf"(?:\(\?!\.\)|(?:\(\?>\.\*\?{LITERAL}+\))*(?:\.\*{LITERAL}+\(\?!\.\))?)"
)


@given(st.text(alphabet=PATTERN_CHARS, max_size=20), st.booleans())
@settings(max_examples=1000)
def test_linear_regex_never_backtracks_into_a_segment(pattern, ci):
    # Every .* is either the lazy scan of an atomic group or the single one before the last
    # segment: no two free .* can trade characters, which is what made matching polynomial.
    from deltaflow.tracking._search import like_to_linear_regex

    regex = like_to_linear_regex(pattern, ci)
    assert LINEAR_SHAPE.fullmatch(regex), regex
    if sys.version_info >= (3, 11):
        re.compile(regex)


def test_linear_regex_examples():
    from deltaflow.tracking._search import like_to_linear_regex

    assert like_to_linear_regex("%a%a%b", False) == "(?s)^(?>.*?a)(?>.*?a).*b(?!.)"
    assert like_to_linear_regex("ab%%c", True) == "(?isu)^ab.*c(?!.)"
    assert like_to_linear_regex("x___y%", False) == "(?s)^x.{3}y"
    assert like_to_linear_regex("%\\%%", False) == "(?s)^(?>.*?\\%)"
    assert like_to_linear_regex("", False) == "(?s)^(?!.)"


# The patterns; each took a backtracking matcher minutes on a 5,000-character value.
LONG = 5_000
PATHOLOGICAL = [
    ("%a%a%b", False),
    ("%a" * 12 + "%b", False),
    ("%A%A%B", True),
    ("%a_a%a_%b", False),
    ("%" + "a_" * 10 + "%b", True),
    ("%a" * 2_000 + "%b", False),
]


@pytest.mark.parametrize("pattern,ci", PATHOLOGICAL)
def test_pathological_patterns_on_a_5000_character_value(pattern, ci):
    from deltaflow.tracking._search import like_match

    hit, miss, other = "a" * (LONG - 1) + "b", "a" * LONG, "b" + "a" * (LONG - 2) + "c"
    assert like_match(pattern, hit, ci)
    assert not like_match(pattern, miss, ci)
    assert not like_match(pattern, other, ci)
    assert like_match(pattern, hit.upper(), ci) == ci


@pytest.mark.parametrize("pattern,ci", PATHOLOGICAL[:4])
def test_evaluate_is_linear_too(pattern, ci):
    # evaluate() serves search_experiments and the registry searches.
    clause = Comparison("tag", "t", "ILIKE" if ci else "LIKE", pattern)
    assert evaluate("a" * (LONG - 1) + "b", clause)
    assert not evaluate("a" * LONG, clause)


def test_like_match_rejects_non_strings():
    from deltaflow.errors import InvalidArgument
    from deltaflow.tracking._search import like_match, like_to_linear_regex

    with pytest.raises(InvalidArgument, match="must be a string"):
        like_match(5, "x", False)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="must be a string"):
        like_to_linear_regex(None, False)  # type: ignore[arg-type]
