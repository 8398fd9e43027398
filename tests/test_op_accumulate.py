"""`accumulate`: fold `[state, body]` into a new state, emitted after every message."""

from __future__ import annotations

import json

from loom.pipeline import Pipeline, parse_definition
from loom.store.message import new_message


def run(definition: str, inputs: list[str]) -> list[str]:
    with Pipeline(parse_definition(definition, name="t"), instance="t") as pipe:
        return [m.body for b in inputs for m in pipe.push(new_message("cli", b))]


def test_a_running_sum_starts_from_null() -> None:
    out = run(
        "- accumulate: {expr: 'sum([@[0] || `0`, @[1].n])'}", ['{"n": 1}', '{"n": 2}', '{"n": 4}']
    )
    assert out == ["1", "3", "7"]


def test_the_state_may_be_any_json_value() -> None:
    expr = "{count: sum([@[0].count || `0`, `1`]), titles: [@[0].titles || `[]`, [@[1]]] | []}"
    out = run(f'- accumulate: "{expr}"', ["a", "b"])
    assert json.loads(out[-1]) == {"count": 2, "titles": ["a", "b"]}


def test_a_string_state_is_emitted_raw_like_map() -> None:
    assert run("- accumulate: '@[1]'", ["x", "y"]) == ["x", "y"]
