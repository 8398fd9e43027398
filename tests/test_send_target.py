"""`loom send` to a name that does not exist: a typo is an error, `--create` queues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_loom, wait_for
from home_kit import stop_all  # noqa: F401

import loom
from loom.api import NoSuchProcess

INSTANCE = "upper~source→sink"


def msgs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.msg")) if folder.is_dir() else []


def stopped_agent(name: str) -> None:
    """An agent that ran once and is stopped now (a one-shot answer leaves its folder)."""
    r = run_loom("agent", "start", name, "--model", "echo", "--stdin", input="once")
    assert r.returncode == 0, r.stderr


def test_a_typo_exits_1_with_a_did_you_mean_and_creates_nothing(loom_home: Path) -> None:
    stopped_agent("helper")
    before = sorted(p.relative_to(loom_home) for p in loom_home.rglob("*"))
    for args in (("hello",), ("--lines",)):
        r = run_loom("send", "helpr", *args, input="a line\n")
        assert r.returncode == 1, r.stderr
        assert r.stdout == ""
        assert r.stderr.splitlines() == [
            "loom: no agent or pipe named 'helpr'; did you mean 'helper'? "
            "(--create queues it for one that starts later)"
        ]
    assert not (loom_home / "agents/helpr").exists()
    assert sorted(p.relative_to(loom_home) for p in loom_home.rglob("*")) == before


def test_a_name_like_nothing_gets_no_suggestion(loom_home: Path) -> None:
    stopped_agent("helper")
    r = run_loom("send", "zzz", "hello")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "loom: no agent or pipe named 'zzz' (--create queues it for one that starts later)"
    ]
    # An empty home: no suggestion either, and still nothing made.
    assert run_loom("send", "x~y→z", "hello").returncode == 1
    assert not (loom_home / "pipes").exists()


@pytest.mark.usefixtures("stop_all")
def test_create_queues_for_an_agent_that_starts_later(loom_home: Path) -> None:
    r = run_loom("send", "later", "--create", "waiting for you")
    assert r.returncode == 0, r.stderr
    queued = Path(r.stdout.strip())
    assert queued.parent == loom_home / "agents/later/inbox"
    # Queued once, the name is known: more messages need no --create.
    r = run_loom("send", "later", "and me")
    assert r.returncode == 0, r.stderr
    assert len(msgs(loom_home / "agents/later/inbox")) == 2
    r = run_loom("agent", "start", "later", "--model", "echo", "-d")
    assert r.returncode == 0, r.stderr
    outbox = loom_home / "agents/later/outbox"
    wait_for(lambda: len(msgs(outbox)) == 2, what="both replies")
    bodies = sorted(json.loads((outbox / n).read_text())["body"] for n in msgs(outbox))
    assert bodies == ["and me", "waiting for you"]
    assert (loom_home / "agents/later/inbox/.processed" / queued.name).exists()


def test_a_stopped_agent_takes_messages_without_create(loom_home: Path) -> None:
    stopped_agent("helper")
    assert (loom_home / "agents/helper/status").read_text().strip() == "stopped"
    r = run_loom("send", "helper", "while you were out")
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).parent == loom_home / "agents/helper/inbox"


@pytest.mark.usefixtures("stop_all")
def test_a_pipe_instance_name_is_accepted(loom_home: Path) -> None:
    for name in ("source", "sink"):
        assert run_loom("agent", "start", name, "--model", "echo", "-d").returncode == 0
    assert run_loom("pipe", "create", "upper", input='- map: "@"\n').returncode == 0
    assert run_loom("route", "source", "--pipe", "upper", "--to", "sink").returncode == 0
    instance = loom_home / "pipes" / INSTANCE
    wait_for(lambda: (instance / "status").exists(), what="the pipe instance")
    r = run_loom("send", INSTANCE, '"straight in"')
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).parent == instance / "inbox"
    # A typo of the instance name is caught like any other.
    r = run_loom("send", "upper~source→sinc", "x")
    assert r.returncode == 1
    assert f"did you mean '{INSTANCE}'?" in r.stderr


def test_create_with_an_instance_name_queues_for_that_pipe_instance(loom_home: Path) -> None:
    r = run_loom("send", INSTANCE, "--create", '"early"')
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).parent == loom_home / "pipes" / INSTANCE / "inbox"
    assert not (loom_home / "agents").exists()


def test_a_defined_pipe_not_started_takes_messages(loom_home: Path) -> None:
    assert run_loom("pipe", "create", "tag", input='- map: "@"\n').returncode == 0
    r = run_loom("send", "tag", '{"n": 1}')
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).parent == loom_home / "pipes/tag/inbox"


def test_the_library_checks_too_and_create_queues(loom_home: Path) -> None:
    stopped_agent("helper")
    with pytest.raises(NoSuchProcess) as caught:
        loom.send("helpr", "from a script")
    assert caught.value.close == "helper"
    assert "did you mean 'helper'?" in str(caught.value) and "create=True" in str(caught.value)
    assert not (loom_home / "agents/helpr").exists()
    path = loom.send("helpr", "from a script", create=True)
    assert path.parent == loom_home / "agents/helpr/inbox"
