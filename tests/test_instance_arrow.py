"""Pipe instance names typed with `->` instead of `→` (SPEC 3): every command that takes
an instance name maps it to the canonical name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import kill_supervisor, run_loom, wait_for

WEAVE = """\
version: 1
pipes:
  upper:
    - map: "{text: text, seen: `true`}"
agents:
  - name: source
    model: echo
  - name: sink
    model: echo
    from: [{agent: source, pipe: upper}]
"""
CANONICAL = "upper~source→sink"
TYPED = "upper~source->sink"


@pytest.fixture
def weave_dir(tmp_path: Path, loom_home: Path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "loom.yml").write_text(WEAVE)
    yield work
    run_loom("down", cwd=work)
    kill_supervisor(loom_home)


def processed(home: Path, kind: str, name: str) -> list[Path]:
    folder = home / kind / name / "inbox" / ".processed"
    return sorted(folder.glob("*.msg")) if folder.is_dir() else []


def test_a_typed_arrow_names_the_instance(weave_dir: Path, loom_home: Path) -> None:
    up = run_loom("up", "-d", cwd=weave_dir)
    assert up.returncode == 0, up.stderr
    instance = loom_home / "pipes" / CANONICAL
    wait_for(lambda: (instance / "status").is_file(), what="the pipe instance to start")

    sent = run_loom("send", TYPED, '{"text": "hi"}')
    assert sent.returncode == 0, sent.stderr
    assert f"/pipes/{CANONICAL}/inbox/" in sent.stdout
    assert not (loom_home / "pipes" / TYPED).exists()
    assert not (loom_home / "agents" / TYPED).exists()
    wait_for(lambda: processed(loom_home, "agents", "sink"), 20, "sink to answer")
    filename = Path(sent.stdout.strip()).name

    traced = run_loom("trace", f"pipes/{TYPED}/inbox/{filename}", "--json")
    assert traced.returncode == 0, traced.stderr
    assert filename in traced.stdout
    assert CANONICAL in json.dumps(json.loads(traced.stdout), ensure_ascii=False)

    logs = run_loom("agent", "logs", TYPED, "--json")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip()

    stop = run_loom("agent", "stop", TYPED)
    assert stop.returncode == 0, stop.stderr
    assert (instance / "status").read_text().strip() == "stopped"
    assert not (loom_home / "pipes" / TYPED).exists()


def test_a_malformed_instance_name_is_refused(loom_home: Path) -> None:
    r = run_loom("agent", "stop", "upper~source->")
    assert r.returncode != 0
    assert "invalid pipe instance name" in r.stderr and "(or ->)" in r.stderr
