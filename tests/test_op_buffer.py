"""`buffer`: hold until EXPR over the held bodies is true; on timeout flush with a marker."""

from __future__ import annotations

import json

import pytest

from loom.pipeline import OperatorError, Pipeline, parse_definition
from loom.store.message import Message, new_message

UNTIL = '- buffer: {until: "[-1].done", timeout: 1m}'


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def items(msg: Message) -> list[object]:
    return [e.get("body", e) for e in json.loads(msg.body)]


def test_messages_are_held_until_the_expression_is_true() -> None:
    pipe = Pipeline(parse_definition(UNTIL, name="t"), instance="t", clock=Clock())
    assert pipe.push(new_message("cli", '{"part": 1}')) == []
    assert pipe.push(new_message("cli", "text is fine too")) == []
    last = new_message("cli", '{"part": 3, "done": true}')
    [out] = pipe.push(last)
    assert items(out) == ['{"part": 1}', "text is fine too", '{"part": 3, "done": true}']
    assert out.origin == last.filename
    assert pipe.next_deadline() is None


def test_the_expression_sees_the_list_of_bodies() -> None:
    definition = parse_definition("- buffer: {until: 'length(@) >= `2`'}", name="t")
    pipe = Pipeline(definition, instance="t")
    assert pipe.push(new_message("cli", "a")) == []
    assert len(pipe.push(new_message("cli", "b"))) == 1


def test_the_timeout_flushes_with_a_marker_as_last_element() -> None:
    clock = Clock()
    pipe = Pipeline(parse_definition(UNTIL, name="t"), instance="t", clock=clock)
    pipe.push(new_message("cli", '{"part": 1}'))
    clock.now += 59
    assert pipe.poll() == []
    clock.now += 1
    [out] = pipe.poll()
    assert items(out) == ['{"part": 1}', {"_buffer_timeout": True}]


def test_end_of_input_flushes_with_the_marker_too() -> None:
    pipe = Pipeline(parse_definition(UNTIL, name="t"), instance="t")
    pipe.push(new_message("cli", "a"))
    [out] = pipe.flush()
    assert items(out) == ["a", {"_buffer_timeout": True}]
    assert pipe.flush() == []


def test_a_failing_expression_leaves_the_buffer_as_it_was() -> None:
    definition = parse_definition("- buffer: {until: 'length([-1].n) > `1`'}", name="t")
    pipe = Pipeline(definition, instance="t")
    assert pipe.push(new_message("cli", '{"n": "a"}')) == []
    with pytest.raises(OperatorError):
        pipe.push(new_message("cli", '{"n": 5}'))
    [out] = pipe.push(new_message("cli", '{"n": "abc"}'))
    assert items(out) == ['{"n": "a"}', '{"n": "abc"}']
