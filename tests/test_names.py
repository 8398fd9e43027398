"""Names from users never become unexpected paths (SPEC 3)."""

from __future__ import annotations

import pytest

from loom.errors import InvalidName
from loom.names import instance_name, validate_name, validate_process_name


@pytest.mark.parametrize(
    "name", ["../x", "A", "a/b", "", "a\x00b", "-a", "1a", "a b", "a" * 200, ".", "a_b"]
)
def test_hostile_or_malformed_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


@pytest.mark.parametrize("name", ["a", "summarizer", "web-2", "x1-y2"])
def test_good_names_pass(name: str) -> None:
    assert validate_name(name) == name


def test_pipe_instance_names() -> None:
    name = instance_name("filter", "researcher", "writer")
    assert name == "filter~researcher→writer"
    assert validate_process_name(name) == name
    for bad in ["f~a→../b", "f~a", "~a→b", "f~a→b/c"]:
        with pytest.raises(InvalidName):
            validate_process_name(bad)
