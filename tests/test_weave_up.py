"""`loom up` / `loom down` (SPEC 9): idempotent, driven by config.hash, state kept."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from conftest import run_loom, wait_for

WEAVE = """\
version: 1
pipes:
  upper:
    - map: "{{text: text, seen: `true`}}"
agents:
  - name: source
    model: echo
  - name: sink
    model: echo
    system: {system}
    from: [{{agent: source, pipe: upper}}]
  - name: extra
    model: echo
"""


def write(tmp_path: Path, system: str = "first", drop_extra: bool = False) -> None:
    text = WEAVE.format(system=system)
    if drop_extra:
        text = text.replace("  - name: extra\n    model: echo\n", "")
    (tmp_path / "loom.yml").write_text(text)


def pid(home: Path, kind: str, name: str) -> int | None:
    raw = (home / kind / name / "pid").read_text().strip()
    return int(raw) if raw else None


def lines(out: str) -> dict[str, str]:
    return {ln.split()[1]: ln.split()[0] for ln in out.splitlines() if ln.strip()}


def test_up_is_idempotent_and_follows_edits(weave_dir: Path, loom_home: Path) -> None:
    write(weave_dir)
    first = run_loom("up", "-d", cwd=weave_dir)
    assert first.returncode == 0, first.stderr
    instance = "upper~source→sink"
    assert lines(first.stdout) == {
        "source": "started",
        "sink": "started",
        "extra": "started",
        instance: "started",
    }
    pids = {n: pid(loom_home, "agents", n) for n in ("source", "sink", "extra")}
    second = run_loom("up", "-d", cwd=weave_dir)
    assert set(lines(second.stdout).values()) == {"unchanged"}
    assert {n: pid(loom_home, "agents", n) for n in pids} == pids

    write(weave_dir, system="second", drop_extra=True)
    third = run_loom("up", "-d", cwd=weave_dir)
    assert third.returncode == 0, third.stderr
    assert lines(third.stdout) == {
        "source": "unchanged",
        "sink": "restarted",
        instance: "unchanged",
        "extra": "stopped",
    }
    assert pid(loom_home, "agents", "source") == pids["source"]
    assert pid(loom_home, "agents", "sink") not in (None, pids["sink"])
    assert (loom_home / "agents/sink/prompt.md").read_text() == "second"
    wait_for(lambda: (loom_home / "agents/extra/status").read_text().strip() == "stopped")

    run_loom("send", "source", json.dumps({"text": "through the weave"}))
    outbox = loom_home / "agents/sink/outbox"
    wait_for(lambda: outbox.is_dir() and any(outbox.iterdir()), what="the routed reply")
    reply = json.loads(next(outbox.iterdir()).read_text())
    assert json.loads(reply["body"]) == {"text": "through the weave", "seen": True}
    assert len(reply["origin"].split("/")) == 3

    down = run_loom("down", cwd=weave_dir)
    assert down.returncode == 0
    wait_for(
        lambda: all(
            (loom_home / d / "status").read_text().strip() == "stopped"
            for d in ("agents/source", "agents/sink", f"pipes/{instance}")
        ),
        what="everything stopped",
    )
    assert any(outbox.iterdir())  # state kept
    assert (loom_home / "agents/extra/inbox").is_dir()


def test_up_refuses_a_missing_credential_before_starting_anything(
    weave_dir: Path, loom_home: Path
) -> None:
    (weave_dir / "loom.yml").write_text(
        "version: 1\nagents:\n  - {name: a, model: echo}\n  - {name: b, model: openai/gpt-x}\n"
    )
    r = run_loom("up", "-d", cwd=weave_dir)
    assert r.returncode == 2
    assert "OPENAI_API_KEY" in r.stderr
    assert not (loom_home / "agents/a").exists()


def test_foreground_up_shows_a_live_view_and_ctrl_c_stops_the_weave(
    weave_dir: Path, loom_home: Path, reap: list
) -> None:
    from conftest import spawn_loom

    write(weave_dir)
    p = spawn_loom("up", cwd=weave_dir)
    reap.append(p)
    assert p.stdout is not None
    header = p.stdout.readline().decode()
    assert header.split() == ["NAME", "STATUS", "WAITING", "DONE", "FAILED"]
    seen = set()
    while len(seen) < 4:
        row = p.stdout.readline().decode().split()
        if row and row[0] != "NAME":
            seen.add(row[0])
    assert seen == {"source", "sink", "extra", "upper~source→sink"}
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0
    for name in ("source", "sink", "extra"):
        assert (loom_home / "agents" / name / "status").read_text().strip() == "stopped"


def test_tools_in_the_weave_scope_the_agent(weave_dir: Path, loom_home: Path) -> None:
    plugins = weave_dir / ".loom" / "plugins"
    plugins.mkdir(parents=True)
    for name in ("alpha", "beta"):
        tool = plugins / name
        tool.write_text(
            "#!/bin/sh\n"
            f'[ "$1" = describe ] && echo \'{{"name": "{name}", "description": "d", '
            '"input_schema": {"type": "object"}}\' && exit 0\n'
            'echo \'{"status": "ok", "result": 1}\'\n'
        )
        tool.chmod(0o755)
    (weave_dir / "loom.yml").write_text(
        "version: 1\nagents:\n  - {name: a, model: echo, tools: [beta]}\n"
    )
    r = run_loom("up", "-d", cwd=weave_dir)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (loom_home / "agents/a/tools").iterdir()) == ["beta"]
