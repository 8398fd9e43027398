"""`split`: one message per element of the list EXPR yields."""

from __future__ import annotations

import pytest

from loom.pipeline import OperatorError, Pipeline, parse_definition
from loom.store.message import new_message


def run(definition: str, body: str) -> tuple[list[str], dict[str, int]]:
    with Pipeline(parse_definition(definition, name="t"), instance="t") as pipe:
        out = [m.body for m in pipe.push(new_message("cli", body))]
        return out, dict(pipe.drops)


def test_each_element_becomes_a_message_rendered_like_map() -> None:
    out, _ = run('- split: "items"', '{"items": ["a", {"b": 1}, 2]}')
    assert out == ["a", '{"b":1}', "2"]


def test_outputs_are_distinct_messages_with_the_same_origin() -> None:
    with Pipeline(parse_definition('- split: "@"', name="t"), instance="t") as pipe:
        msg = new_message("cli", "[1, 2]")
        outs = pipe.push(msg)
    assert len({o.id for o in outs}) == 2
    assert {o.origin for o in outs} == {msg.filename}


@pytest.mark.parametrize("body", ['{"items": null}', '{"items": []}', "plain text"])
def test_nothing_to_split_forwards_nothing_and_counts_a_drop(body: str) -> None:
    assert run('- split: "items"', body) == ([], {"1:split": 1})


def test_a_non_list_is_an_error_for_that_message() -> None:
    with pytest.raises(OperatorError, match="split needs a list"):
        run('- split: "items"', '{"items": "abc"}')
