"""JMESPath in loom: body parsing, truthiness, loom's envelope functions, compile errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loom.pipeline.errors import ArgError, ExpressionError
from loom.pipeline.expressions import (
    compile_expression,
    is_truthy,
    parse_body,
    render_value,
)
from loom.store.message import new_message


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ("42", 42),
        ('"quoted"', "quoted"),
        ("plain text", "plain text"),
        ("", ""),
        ("NaN", "NaN"),
        ("[" * 100_000, "[" * 100_000),
    ],
)
def test_bodies_parse_as_json_or_stay_text(body: str, value: object) -> None:
    assert parse_body(body) == value


def test_render_is_raw_for_strings_and_compact_json_otherwise() -> None:
    assert render_value("é\nx") == "é\nx"
    assert render_value({"a": [1, None]}) == '{"a":[1,null]}'
    assert render_value(None) == "null"


@pytest.mark.parametrize("value", [False, None, "", [], {}])
def test_falsy(value: object) -> None:
    assert not is_truthy(value)


@pytest.mark.parametrize("value", [True, 0, 0.0, "0", [None], {"a": None}])
def test_truthy(value: object) -> None:
    assert is_truthy(value)


def test_envelope_functions() -> None:
    parent = new_message("writer", "x")
    msg = parent.reply("editor", '{"a": 1}', error=True, to=("a", "b"))
    expr = compile_expression(
        "[envelope('from'), envelope('id'), envelope('origin'), envelope('error'),"
        " envelope('to'), envelope('ts'), envelope('v'), envelope('body'), sender(), is_error()]"
    )
    assert expr.evaluate(msg) == [
        "editor",
        msg.id,
        parent.filename,
        True,
        ["a", "b"],
        msg.ts,
        1,
        '{"a": 1}',
        "editor",
        True,
    ]


def test_from_json_reads_the_bodies_inside_a_batch() -> None:
    batch = '[{"body": "{\\"n\\": 1}"}, {"body": "text"}]'
    expr = compile_expression("map(&from_json(body), @)")
    assert expr.evaluate(new_message("cli", batch)) == [{"n": 1}, "text"]


def test_one_compiled_expression_serves_many_messages() -> None:
    expr = compile_expression("sender()")
    assert [expr.evaluate(new_message(s, "")) for s in ("a", "b")] == ["a", "b"]


def test_runtime_errors_are_expression_errors_with_a_short_text() -> None:
    expr = compile_expression("length(n)")
    with pytest.raises(ExpressionError, match="length") as info:
        expr.evaluate(new_message("cli", '{"n": %s}' % ("1" * 5000)))
    assert len(str(info.value)) < 400
    with pytest.raises(ExpressionError, match="unknown field"):
        compile_expression("envelope(name)").evaluate(new_message("cli", '{"name": "nope"}'))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a.b.", "character 5"),
        ("foo[", "ends too early"),
        ("`x", "character 1"),
        ("lenght(a)", "unknown JMESPath function lenght() (did you mean length()?)"),
        ("length(a, b)", "length() takes 1 argument(s), got 2"),
        ("envelope('sender')", "envelope('sender'): unknown field"),
        ("", "empty"),
        (42, "must be a JMESPath expression"),
    ],
)
def test_compile_errors(text: object, problem: str) -> None:
    with pytest.raises(ArgError) as info:
        compile_expression(text, key="when")
    assert problem in info.value.problem
    assert info.value.key == "when"


def test_parse_errors_show_a_caret_under_the_position() -> None:
    with pytest.raises(ArgError) as info:
        compile_expression("items[?x = 1]")
    head, text, caret = info.value.problem.splitlines()
    assert head.startswith(
        "bad JMESPath expression at character 10 of the expression: Unknown token '='"
    )
    assert text.strip() == "items[?x = 1]"
    assert caret.index("^") == text.index("=")


def test_origin_root_names_the_first_message_of_the_run() -> None:
    from loom.pipeline.expressions import compile_expression
    from loom.store.message import new_message

    root = new_message("cli", "{}")
    child = root.reply("a", "{}").reply("b", "{}")
    expr = compile_expression("origin_root()")
    assert expr.evaluate(child) == root.filename
    assert expr.evaluate(root) == root.filename


def _json_loads_or_text(text: str) -> object:
    def reject(name: str) -> object:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=reject)
    except (ValueError, RecursionError):
        return text


json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
).map(json.dumps)
padding = st.sampled_from(["", " ", "\n", "\t ", "\r\n", "x", "\ufeff", " ]"])


@given(st.tuples(padding, json_texts | st.text(max_size=12), padding))
def test_body_parsing_is_json_loads_with_text_as_the_fallback(parts: tuple[str, str, str]) -> None:
    text = "".join(parts)
    expected = _json_loads_or_text(text)
    for _ in range(2):  # the second time comes from the cache of the last body
        assert json.dumps(parse_body(text)) == json.dumps(expected)


def test_the_parse_cache_keeps_texts_apart() -> None:
    assert parse_body('{"a": 1}') == {"a": 1}
    assert parse_body('{"a": 2}') == {"a": 2}
    assert parse_body('{"a": 1}') == {"a": 1}
