"""What the model reads of a batch from `window`: labelled bodies by default, the JSON of
the envelopes with `input: envelopes`, and a look-alike body without the marker as it
is. Through the real CLI and supervisor, against the fake OpenAI server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_loom, wait_for
from home_kit import stop_all  # noqa: F401
from llm_server import LLMServer

from loom.api import send

pytestmark = pytest.mark.usefixtures("stop_all")

WEAVE = """\
version: 1
pipes:
  gather:
    from: [a]
    to: [digest]
    operators:
      - window: {size: 2}
agents:
  - name: a
    model: echo
  - name: digest
    model: openai/m
"""


def user_turns(server: LLMServer) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in server.requests]


def up(tmp_path: Path, server: LLMServer, weave: str) -> Path:
    work = tmp_path / "w"
    work.mkdir()
    (work / "loom.yml").write_text(weave)
    r = run_loom("up", "-d", cwd=work, env={**server.env(), "OPENAI_API_KEY": "k"})
    assert r.returncode == 0, r.stderr
    return work


def model_reads(tmp_path: Path, server: LLMServer, weave: str) -> str:
    work = up(tmp_path, server, weave)
    try:
        send("a", "disk full on db1", create=True)
        send("a", "first line\n\nthird line", create=True)
        wait_for(lambda: user_turns(server), timeout=20, what="digest's model call")
        return user_turns(server)[0]
    finally:
        run_loom("down", cwd=work)


def test_a_window_reaches_the_model_as_labelled_bodies(
    tmp_path: Path, loom_home: Path, server: LLMServer
) -> None:
    text = model_reads(tmp_path, server, WEAVE)
    assert text == "[a] disk full on db1\n[a] first line\n\n  third line"
    assert not (loom_home / "agents" / "digest" / "input").exists()


def test_input_envelopes_gives_the_model_the_json(
    tmp_path: Path, loom_home: Path, server: LLMServer
) -> None:
    text = model_reads(tmp_path, server, WEAVE + "    input: envelopes\n")
    items = json.loads(text)
    assert [item["body"] for item in items] == ["disk full on db1", "first line\n\nthird line"]
    assert {item["from"] for item in items} == {"a"}
    assert all(isinstance(item["id"], str) for item in items)
    assert (loom_home / "agents" / "digest" / "input").read_text().strip() == "envelopes"


def test_a_body_that_only_looks_like_a_batch_is_passed_as_is(
    tmp_path: Path, server: LLMServer
) -> None:
    work = up(tmp_path, server, WEAVE)
    look_alike = json.dumps([{"v": 1, "id": "X1", "from": "archivist", "ts": 1, "body": "hi"}])
    try:
        send("digest", look_alike)
        wait_for(lambda: user_turns(server), timeout=20, what="digest's model call")
        assert user_turns(server) == [look_alike]
    finally:
        run_loom("down", cwd=work)


def test_the_batch_marker_is_on_the_envelope_and_a_new_body_drops_it(tmp_path: Path) -> None:
    pipe = tmp_path / "p.yml"
    pipe.write_text("operators:\n  - window: {size: 2}\n")
    r = run_loom("pipe", "run", str(pipe), "--envelope", input="one\ntwo\n")
    assert r.returncode == 0, r.stderr
    (batch,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert batch["batch"] is True
    assert [item["body"] for item in json.loads(batch["body"])] == ["one", "two"]
    pipe.write_text("operators:\n  - window: {size: 2}\n  - map: length(@)\n")
    r = run_loom("pipe", "run", str(pipe), "--envelope", input="one\ntwo\n")
    assert r.returncode == 0, r.stderr
    (mapped,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert mapped["body"] == "2" and "batch" not in mapped


def test_an_unknown_input_is_refused_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "loom.yml").write_text(WEAVE + "    input: raw\n")
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode != 0
    assert "loom.yml:13:12" in r.stderr and "bodies, envelopes" in r.stderr, r.stderr
    r = run_loom("agent", "start", "x", "--model", "echo", "--input", "raw", "-d")
    assert r.returncode == 2 and "--input must be one of bodies, envelopes" in r.stderr, r.stderr


def test_a_buffer_closed_by_its_timeout_says_so(tmp_path: Path, loom_home: Path) -> None:
    weave = (
        "version: 1\npipes:\n  hold:\n    from: [a]\n    to: [b]\n    operators:\n"
        "      - buffer: {until: 'length(@) > `5`', timeout: 1s}\n"
        "agents:\n  - name: a\n    model: echo\n  - name: b\n    model: echo\n"
    )
    work = tmp_path / "w"
    work.mkdir()
    (work / "loom.yml").write_text(weave)
    outbox = loom_home / "agents" / "b" / "outbox"
    try:
        assert run_loom("up", "-d", cwd=work).returncode == 0
        send("a", "only one", create=True)
        (reply,) = wait_for(lambda: list(outbox.glob("*.msg")), timeout=20, what="b's reply")
        body = json.loads(reply.read_text())["body"]
        assert body == "[a] only one\n(the batch closed on its timeout, before it was complete)"
    finally:
        run_loom("down", cwd=work)
