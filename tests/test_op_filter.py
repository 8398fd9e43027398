"""`filter`: keep a message when EXPR is true by JMESPath truthiness, drop it otherwise."""

from __future__ import annotations

import pytest

from loom.pipeline import Pipeline, parse_definition
from loom.store.message import new_message


def kept(definition: str, body: str, *, error: bool = False) -> bool:
    with Pipeline(parse_definition(definition, name="t"), instance="t") as pipe:
        msg = new_message("cli", body, error=error)
        return bool(pipe.push(msg))


@pytest.mark.parametrize("value", ["false", "null", '""', "[]", "{}"])
def test_jmespath_false_values_drop(value: str) -> None:
    assert not kept('- filter: "v"', f'{{"v": {value}}}')


@pytest.mark.parametrize("value", ["true", "0", '"0"', "[0]", '{"a": null}', '"false"'])
def test_everything_else_keeps(value: str) -> None:
    assert kept('- filter: "v"', f'{{"v": {value}}}')


def test_text_lines_are_filtered_as_strings() -> None:
    assert kept("- filter: \"@ == 'keep me'\"", "keep me")
    assert not kept("- filter: \"@ == 'keep me'\"", "drop me")
    assert not kept('- filter: "severity > `2`"', "not json at all")


def test_error_messages_can_be_filtered_out() -> None:
    assert kept('- filter: "!is_error()"', "x")
    assert not kept('- filter: "!is_error()"', "x", error=True)


def test_drops_are_counted_per_operator() -> None:
    definition = parse_definition('- map: "@"\n- filter: "n > `1`"', name="t")
    with Pipeline(definition, instance="t") as pipe:
        for n in range(4):
            pipe.push(new_message("cli", f'{{"n": {n}}}'))
        assert pipe.drops == {"2:filter": 2}
