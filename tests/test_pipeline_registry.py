"""One registry: built-ins and third-party operators register the same way (STYLE 4)."""

from __future__ import annotations

import pytest

from loom.pipeline import Pipeline, parse_definition
from loom.pipeline.operators import REGISTRY, Args, Operator, names, register
from loom.store.message import Message, new_message

SPEC_TABLE = {
    "map", "filter", "split", "route", "fanout", "command",
    "tap", "window", "buffer", "dedupe", "throttle", "accumulate",
}  # fmt: skip


def test_every_operator_of_the_spec_is_registered() -> None:
    assert set(names()) == SPEC_TABLE
    assert all(REGISTRY[name].kind == name for name in names())


def test_a_third_party_operator_is_one_class_and_a_decorator() -> None:
    @register
    class Repeat(Operator):
        kind = "repeat_for_test"
        primary = "times"

        def configure(self, args: Args) -> None:
            self.times = args.count("times")

        def process(self, msg: Message, key: str, now: float) -> list[Message]:
            return [msg.with_body(msg.body * self.times)]

    try:
        definition = parse_definition("- repeat_for_test: 3\n- map: 'length(@)'", name="t")
        with Pipeline(definition, instance="t") as pipe:
            assert [m.body for m in pipe.push(new_message("cli", "ab"))] == ["6"]
        with pytest.raises(ValueError, match="already registered"):

            @register
            class Other(Operator):
                kind = "repeat_for_test"
    finally:
        del REGISTRY["repeat_for_test"]
