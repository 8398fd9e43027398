"""The small library API scripts import: `loom.send` and `loom.read_outbox`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_loom

import loom
from loom.errors import InvalidName, NotFound


def test_send_then_read_the_reply(loom_home: Path) -> None:
    path = loom.send("helper", "from a script", sender="cron", create=True)
    assert path.parent == loom_home / "agents/helper/inbox"
    msg = loom.Message  # the type is exported too
    assert msg is not None
    # Answer it with the real CLI, then read the outbox from Python.
    r = run_loom("agent", "start", "helper", "--model", "echo", "--stdin", input="second")
    assert r.returncode == 0, r.stderr
    replies = list(loom.read_outbox("helper"))
    assert [m.body for m in replies] == ["second"]
    assert list(loom.read_outbox("helper", after=replies[0].filename)) == []


def test_bad_names_and_unknown_agents(loom_home: Path) -> None:
    with pytest.raises(InvalidName):
        loom.send("../etc", "x")
    with pytest.raises(NotFound):
        list(loom.read_outbox("nobody"))
