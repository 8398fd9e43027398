"""`tap`: a copy for inspection; the message continues."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from loom.errors import ConfigError
from loom.pipeline import Pipeline, parse_definition
from loom.store.message import new_message, parse

DEFINITION = '- tap: seen\n- map: "upper"'


def test_in_memory_the_copy_is_one_line_on_stderr() -> None:
    stderr = io.StringIO()
    pipe = Pipeline(parse_definition(DEFINITION, name="t"), instance="t", stderr=stderr)
    msg = new_message("cli", '{"upper": "A"}')
    assert [m.body for m in pipe.push(msg)] == ["A"]
    label, _, envelope = stderr.getvalue().strip().partition(": ")
    assert label == "tap seen"
    assert json.loads(envelope)["id"] == msg.id


def test_queued_the_copy_is_a_message_file_under_state_tap(tmp_path: Path) -> None:
    pipe = Pipeline(parse_definition(DEFINITION, name="t"), instance="t", state_dir=tmp_path)
    msg = new_message("cli", '{"upper": "A"}')
    pipe.push(msg)
    pipe.push(msg)  # the same input again overwrites the same copy
    [copy] = (tmp_path / "tap" / "seen").iterdir()
    assert copy.name == msg.filename
    assert parse(copy.read_bytes()).body == msg.body


@pytest.mark.parametrize("label", ["../up", "Upper", "", "a/b"])
def test_labels_must_be_names(label: str) -> None:
    with pytest.raises(ConfigError, match=r"operator 1 \(tap\): "):
        parse_definition(f"- tap: '{label}'", name="t")
