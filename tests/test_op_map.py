"""`map`: the body becomes the result of EXPR; strings raw, everything else compact JSON."""

from __future__ import annotations

import json

import pytest

from loom.pipeline import OperatorError, Pipeline, parse_definition
from loom.store.message import new_message


def run(definition: str, *bodies: str, sender: str = "cli") -> list[str]:
    with Pipeline(parse_definition(definition, name="t"), instance="t") as pipe:
        return [out.body for b in bodies for out in pipe.push(new_message(sender, b))]


def test_a_string_result_is_the_body_as_is() -> None:
    assert run('- map: "title"', '{"title": "Hello, \\"world\\""}') == ['Hello, "world"']


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{t: title, n: n}", '{"t":"é","n":2}'),
        ("n", "2"),
        ("missing", "null"),
        ("n > `1`", "true"),
        ("[n, n]", "[2,2]"),
    ],
)
def test_other_results_are_compact_json(expr: str, expected: str) -> None:
    assert run(f'- map: "{expr}"', '{"title": "é", "n": 2}') == [expected]


def test_a_body_that_is_not_json_is_evaluated_as_a_string() -> None:
    assert run('- map: "@"', "plain text") == ["plain text"]
    assert run('- map: "length(@)"', "abc") == ["3"]
    assert run('- map: "title"', "not json {") == ["null"]
    assert run('- map: "@"', "NaN") == ["NaN"]


def test_envelope_functions_see_the_input_message() -> None:
    expr = "{from: envelope('from'), sender: sender(), error: is_error(), to: envelope('to')}"
    [out] = run(f'- map: "{expr}"', "{}", sender="researcher")
    assert json.loads(out) == {
        "from": "researcher",
        "sender": "researcher",
        "error": False,
        "to": None,
    }


def test_a_runtime_error_fails_that_message_only() -> None:
    with Pipeline(parse_definition('- map: "length(n)"', name="t"), instance="t") as pipe:
        with pytest.raises(OperatorError) as info:
            pipe.push(new_message("cli", '{"n": 5}'))
        assert info.value.label == "1:map"
        assert "length()" in info.value.problem
        assert [m.body for m in pipe.push(new_message("cli", '{"n": "abc"}'))] == ["3"]
        assert pipe.errors == {"1:map": 1}


def test_a_10_mb_body_goes_through() -> None:
    text = "x" * 10_000_000
    body = json.dumps({"text": text})
    assert run('- map: "length(text)"', body) == ["10000000"]
    assert run('- map: "text"', body) == [text]
