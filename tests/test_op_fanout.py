"""`fanout`: one copy per destination."""

from __future__ import annotations

import pytest

from loom.errors import ConfigError
from loom.pipeline import Pipeline, parse_definition
from loom.store.message import new_message


def test_one_copy_per_destination_each_with_its_own_to() -> None:
    with Pipeline(parse_definition("- fanout: [a, b, c]", name="t"), instance="t") as pipe:
        msg = new_message("cli", "hello")
        outs = pipe.push(msg)
    assert [(m.to, m.body) for m in outs] == [
        (("a",), "hello"),
        (("b",), "hello"),
        (("c",), "hello"),
    ]
    assert len({m.id for m in outs}) == 3
    assert all(m.origin == msg.filename and m.sender == "t" for m in outs)


def test_a_single_destination_may_be_a_plain_name() -> None:
    with Pipeline(parse_definition("- fanout: a", name="t"), instance="t") as pipe:
        assert [m.to for m in pipe.push(new_message("cli", "x"))] == [("a",)]


@pytest.mark.parametrize("value", ["[]", "[Bad]", "[a/b]", "{to: 3}"])
def test_bad_destinations_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match=r"operator 1 \(fanout\)(, key 'to')?: "):
        parse_definition(f"- fanout: {value}", name="t")
