"""The body chain (`loom pipe run`'s map/filter fast path) against the engine and jmespath.

For random lines and random chains of `filter` and `map` steps, the body the body
chain gives (or its drop, or its failure) must be what the engine's step-by-step run
of the same pipe gives; and an expression evaluated on a body alone must give what
jmespath's own interpreter gives.
"""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline_compiler import bodies, json_values

from loom.pipeline import OperatorError, Pipeline, parse_definition
from loom.pipeline.body_chain import BodyChain
from loom.pipeline.expressions import compile_expression
from loom.pipeline.functions import LoomFunctions
from loom.store.message import Message, new_message

NAMES = ["a", "b", "c", "id", "level", "msg"]
documents = bodies  # objects of random JSON values: numbers, texts, nulls, lists, objects
lines = st.one_of(
    documents.map(lambda d: json.dumps(d, ensure_ascii=False)),
    documents.map(json.dumps),  # \uXXXX escapes
    json_values.map(json.dumps),  # not an object: a list, a number, a string
    st.sampled_from(
        [
            '{"level": "error", "msg": "é ☕ \\u0001"}',
            "plain text",
            "{not json",
            "[1, 2",
            '  {"a": 1}  ',
            "NaN",
        ]
    ),
)

# The small grammar: fields, subexpressions, comparisons, &&, ||, !, literals, hashes.
LEAVES = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(["a.b", "a.b.c", "msg.a", "@"]),
    st.sampled_from(["`0`", "`1`", "`2.5`", "`true`", "`false`", "`null`", "`[]`", "`{}`"]),
    st.sampled_from(["'error'", "''", "'x'", '`"x"`', "`[1]`"]),
)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(inner, inner)
    return st.one_of(
        st.tuples(two, st.sampled_from(["==", "!=", "<", ">", "&&", "||"])).map(
            lambda t: f"({t[0][0]} {t[1]} {t[0][1]})"
        ),
        inner.map(lambda e: f"!({e})"),
        st.lists(st.tuples(st.sampled_from(NAMES), inner), min_size=1, max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
    )


expressions = st.recursive(LEAVES, _compound, max_leaves=5)
steps = st.lists(st.tuples(st.sampled_from(["filter", "map"]), expressions), min_size=1, max_size=3)


def pipe(chain: list[tuple[str, str]]) -> Pipeline:
    text = "".join(f"- {kind}: {json.dumps(expr)}\n" for kind, expr in chain)
    return Pipeline(parse_definition(text, name="p"), instance="p")


def engine_outcome(pipeline: Pipeline, line: str) -> tuple[str, Any]:
    try:
        results = pipeline.push_unfinished(new_message("stdin", line))
    except OperatorError:
        return ("error", None)
    return ("bodies", [m.body for m in results])


def chain_outcome(chain: BodyChain, line: str) -> tuple[str, Any]:
    try:
        body = chain.run(line)
    except Exception:  # the caller then hands the line to the engine
        return ("error", None)
    return ("bodies", [] if body is None else [body])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=steps, line=lines)
def test_the_body_chain_gives_the_engines_bodies(chain: list[tuple[str, str]], line: str) -> None:
    pipeline = pipe(chain)
    body_chain = BodyChain.of(pipeline)
    assert body_chain is not None
    assert chain_outcome(body_chain, line) == engine_outcome(pipeline, line)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=expressions, value=st.one_of(json_values, documents))
def test_on_body_matches_jmespaths_interpreter(text: str, value: Any) -> None:
    msg = Message("01J", "x", 1, "{}")
    options = jmespath.Options(custom_functions=LoomFunctions(msg))
    try:
        expected: tuple[str, str] = ("value", json.dumps(jmespath.search(text, value, options)))
    except Exception as exc:
        expected = ("error", type(exc).__name__)
    try:
        got: tuple[str, str] = ("value", json.dumps(compile_expression(text).on_body(value)))
    except Exception as exc:
        got = ("error", type(exc).__name__)
    assert got == expected, text


@pytest.mark.parametrize(
    "chain",
    [
        [("filter", "sender() == 'stdin'")],
        [("map", "{id: id, e: envelope('id')}")],
        [("filter", "a"), ("dedupe", "id")],
    ],
)
def test_chains_that_read_the_envelope_or_keep_state_stay_with_the_engine(
    chain: list[tuple[str, str]],
) -> None:
    assert BodyChain.of(pipe(chain)) is None


def test_drops_are_counted_per_filter() -> None:
    pipeline = pipe([("filter", "level == 'error'"), ("map", "{id: id}")])
    body_chain = BodyChain.of(pipeline)
    assert body_chain is not None
    assert body_chain.run('{"id": 1, "level": "info"}') is None
    assert body_chain.run('{"id": 2, "level": "error"}') == '{"id":2}'
    body_chain.count_drops()
    assert pipeline.drops == {"1:filter": 1}


def test_a_filter_on_a_text_still_sees_it_written_with_escapes() -> None:
    # Lines without `"error"` are dropped unparsed, unless a backslash may spell it.
    pipeline = pipe([("filter", "level == 'error' && id"), ("map", "{id: id}")])
    body_chain = BodyChain.of(pipeline)
    assert body_chain is not None
    assert body_chain.run('{"id": 1, "level": "\\u0065rror"}') == '{"id":1}'
    assert body_chain.run('{"id": 2, "lev\\u0065l": "error"}') == '{"id":2}'
    assert body_chain.run('{"id": 3, "level": "errors"}') is None
    assert body_chain.run('"error"') is None
