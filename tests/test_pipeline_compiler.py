"""The JMESPath compiler gives exactly what jmespath's interpreter gives (values and errors).

Expressions come from three places: a hand-written set covering every kind of node, the
ones used by the catalog (`pipes/`) and the documentation, and a generator of random
expressions. Each is evaluated on generated JSON values and envelopes, compiled and
interpreted, and the two outcomes must render to the same JSON text (so `1`, `1.0` and
`true` stay apart) or fail with the same error.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jmespath
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loom.pipeline.compiler import compile_tree, equal, is_false
from loom.pipeline.definition import parse_definition
from loom.pipeline.errors import ArgError
from loom.pipeline.expressions import compile_expression, is_truthy
from loom.pipeline.functions import LoomFunctions
from loom.store.message import Message

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["a", "b", "c", "id", "level", "n", "tags", "items", "body", "status"]

HAND_WRITTEN = [
    "a",
    "a.b.c",
    "@",
    "@.a",
    "`1`",
    "'text'",
    '`{"a": [1, 2]}`',
    "a == b",
    "a != `0`",
    "a == `false`",
    "n == `1`",
    "n < `2`",
    "n >= `2.5`",
    "n > `0` || level == 'error'",
    "a && b",
    "a || b || c",
    "!a",
    "!n",
    "!(a == b)",
    "status >= `500` || n > `250`",
    "a < b",
    "a <= 'm'",
    "items[0]",
    "items[-1]",
    "items[5]",
    "items[1:3]",
    "items[::-1]",
    "items[::0]",
    "items[*]",
    "items[*].a",
    "items[*].a.b",
    "items[].a",
    "items[][]",
    "a.*",
    "a.*.b",
    "items[?a]",
    "items[?n > `1`].a",
    "items[?a == b] | [0]",
    "{a: a, b: b}",
    "{a: a, x: b.c, y: `1`}",
    "{a: a, a: b}",
    "[a, b]",
    "a.[b, c]",
    "a.{x: b}",
    "a | b",
    "a | [0]",
    "(a || b).c",
    "length(tags)",
    "length(@)",
    "contains(tags, 'x')",
    "contains(['warn', 'error'], level)",
    "starts_with(level, 'e')",
    "to_string(a)",
    "to_number(a)",
    "type(@)",
    "keys(@)",
    "values(@)",
    "not_null(a, b, `0`)",
    "sort_by(items, &n)",
    "max_by(items, &n)",
    "map(&a, items)",
    "map(&from_json(body), items)",
    "join(',', tags)",
    "merge(a, b)",
    "abs(n)",
    "sum(tags)",
    "avg(tags)",
    "sort(tags)",
    "reverse(tags)",
    "to_array(a)",
    "sender()",
    "is_error()",
    "!is_error()",
    "origin_root()",
    "envelope('from')",
    "envelope('id')",
    "envelope('to')",
    "envelope('error')",
    "envelope('origin')",
    "envelope('ts')",
    "envelope('v')",
    "envelope('body')",
    "envelope(level)",
    "from_json(body)",
    "from_json(n)",
    "from_json(body).a",
    "{from: sender(), text: @}",
    "&a",
]

EXPRESSION_KEYS = ("expr", "key", "by", "until", "when")


def catalog_expressions() -> Iterator[str]:
    """Every expression in the catalog's pipe definitions."""
    for path in sorted((ROOT / "pipes").glob("*.yml")):
        if path.name.endswith(".test.yml"):
            continue
        definition = parse_definition(path.read_text("utf-8"), name=path.stem)
        for spec in definition.operators:
            yield from _expressions_in(spec.args)


def _expressions_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in EXPRESSION_KEYS and isinstance(item, str):
                yield item
            else:
                yield from _expressions_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions_in(item)


DOC_EXPRESSION = re.compile(r"\b(?:filter|map|split|key|by|until|when|expr): \"([^\"]+)\"")


def doc_expressions() -> Iterator[str]:
    """The quoted expressions of README.md and docs/ that are valid (placeholders are not).

    Those in jmespath's deprecated literal syntax (`error` for 'error') are left out: they
    parse to the same trees as their modern spelling, without the warning.
    """
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for text in DOC_EXPRESSION.findall(path.read_text("utf-8")):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    compile_expression(text)
            except (ArgError, PendingDeprecationWarning):
                continue
            yield text


CORPUS = sorted({*HAND_WRITTEN, *catalog_expressions(), *doc_expressions()})

# -- generated data ------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 250, 500, 0.0, 1.0, 2.5]),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "x", "error", "warn", "m", "a,b", '{"a": 1}', "[1, 2]"]),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(NAMES), inner, max_size=5),
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=6)
messages = st.builds(
    Message,
    id=st.sampled_from(["01J0000000000000000000000A", "a1b2c3d4e5f60718"]),
    sender=st.sampled_from(["monitor", "writer", "stdin"]),
    ts=st.integers(0, 2**45),
    body=st.one_of(st.just("{}"), st.just("plain"), bodies.map(json.dumps)),
    origin=st.one_of(st.none(), st.just("1-A.msg"), st.just("1-A.msg/2-B.msg")),
    error=st.booleans(),
    to=st.one_of(st.none(), st.just(("a", "b"))),
)

# -- generated expressions -------------------------------------------------------------
LEAVES = st.one_of(
    st.sampled_from(NAMES),
    st.just("@"),
    st.sampled_from(["`0`", "`1`", "`2.5`", "`true`", "`false`", "`null`", "`[]`", "`{}`"]),
    st.sampled_from(["`[1, 2]`", '`"x"`', "'x'", "''", "'error'"]),
    st.sampled_from(["sender()", "is_error()", "envelope('to')", "origin_root()"]),
)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    name = st.sampled_from(NAMES)
    two = st.tuples(inner, inner)
    return st.one_of(
        st.tuples(inner, name).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(two, st.sampled_from(["||", "&&", "|"])).map(
            lambda t: f"({t[0][0]} {t[1]} {t[0][1]})"
        ),
        st.tuples(two, st.sampled_from(["==", "!=", "<", "<=", ">", ">="])).map(
            lambda t: f"({t[0][0]} {t[1]} {t[0][1]})"
        ),
        inner.map(lambda e: f"!({e})"),
        st.tuples(inner, st.sampled_from(["[0]", "[-1]", "[1:]", "[::-1]", "[*]", "[]", ".*"])).map(
            lambda t: f"({t[0]}){t[1]}"
        ),
        st.tuples(inner, inner, name).map(lambda t: f"({t[0]})[?{t[1]}].{t[2]}"),
        st.tuples(inner, name).map(lambda t: f"({t[0]})[*].{t[1]}"),
        st.lists(st.tuples(name, inner), min_size=1, max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
        st.lists(inner, min_size=1, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
        st.tuples(
            st.sampled_from(
                ["length", "type", "keys", "values", "to_string", "to_number", "abs", "from_json"]
            ),
            inner,
        ).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["contains", "starts_with", "merge", "not_null"]), two).map(
            lambda t: f"{t[0]}({t[1][0]}, {t[1][1]})"
        ),
        st.tuples(inner, name).map(lambda t: f"sort_by({t[0]}, &{t[1]})"),
        st.tuples(name, inner).map(lambda t: f"map(&{t[0]}, {t[1]})"),
    )


generated_expressions = st.recursive(LEAVES, _compound, max_leaves=6)


# -- the comparison --------------------------------------------------------------------
def outcome(run: Callable[[], Any]) -> tuple[str, str]:
    try:
        result = run()
    except Exception as exc:  # compared, not hidden: both sides must fail alike
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("value", json.dumps(result))


def assert_same(text: str, value: Any, msg: Message) -> None:
    parsed = jmespath.compile(text)
    compiled = compile_tree(parsed.parsed)
    options = jmespath.Options(custom_functions=LoomFunctions(msg))
    expected = outcome(lambda: parsed.search(value, options=options))
    assert outcome(lambda: compiled(value, msg)) == expected, text


def test_the_corpus_covers_the_catalog_and_the_docs() -> None:
    assert "status >= `500` || latency_ms > `250`" in CORPUS
    assert "contains(['warn', 'warning', 'error', 'fatal'], level)" in CORPUS
    assert "is_error()" in CORPUS
    assert len(CORPUS) > len(HAND_WRITTEN) + 10


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(json_values, bodies), msg=messages)
def test_compiled_corpus_matches_jmespath(value: Any, msg: Message) -> None:
    for text in CORPUS:
        if text != "&a":  # its value is an object of jmespath's, not JSON
            assert_same(text, value, msg)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=generated_expressions, value=st.one_of(json_values, bodies), msg=messages)
def test_compiled_random_expressions_match_jmespath(text: str, value: Any, msg: Message) -> None:
    assert_same(text, value, msg)


def test_functions_taking_an_expression_reference_give_jmespaths_results() -> None:
    # `&n` compiles to no closure of loom's: these run in jmespath's interpreter.
    items = {"items": [{"n": 3, "id": "c"}, {"n": 1, "id": "a"}, {"n": 2, "id": "b"}]}
    msg = Message("01J", "x", 1, "{}")
    for text in ("sort_by(items, &n)[*].id", "max_by(items, &n).id", "map(&n, items)"):
        assert compile_expression(text).search(items, msg) == jmespath.search(text, items)


def test_a_tree_too_deep_to_compile_still_evaluates() -> None:
    text = "a" + ".a" * 3000
    deep: Any = 1
    for _ in range(3001):
        deep = {"a": deep}
    msg = Message("01J", "x", 1, "{}")
    assert compile_expression(text).search(deep, msg) == 1


@given(json_values)
def test_truthiness_rules_agree(value: Any) -> None:
    assert is_false(value) is not is_truthy(value)


@given(json_values, json_values)
def test_equality_keeps_numbers_and_booleans_apart(left: Any, right: Any) -> None:
    expected = jmespath.search("@[0] == @[1]", [left, right])
    assert equal(left, right) is expected
