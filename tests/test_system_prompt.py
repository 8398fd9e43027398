"""The system prompt (SPEC 3): prompt.md, then memory/ in name order, read as the files
are when each message is answered."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import run_loom, spawn_loom, wait_for
from llm_server import LLMServer

KEY = "sk-test-prompt"


def system_of(server: LLMServer, count: int) -> str | None:
    """The system prompt of request number `count`, once the server has it."""
    wait_for(lambda: len(server.requests) >= count, what=f"request {count}")
    messages = server.requests[count - 1].body["messages"]
    systems = [m["content"] for m in messages if m["role"] == "system"]
    return systems[0] if systems else None


def rewrite(path: Path, text: str) -> None:
    """Replace `path`'s text keeping its size and modification time, as `rsync -t`
    can."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_each_message_gets_the_prompt_files_as_they_are_then(
    loom_home: Path, server: LLMServer, reap: list[subprocess.Popen[bytes]]
) -> None:
    agent = loom_home / "agents" / "a"
    memory = agent / "memory"
    (memory / "notes").mkdir(parents=True)  # a folder in memory/ is not read
    prompt = agent / "prompt.md"
    prompt.write_text("Answer in French.\n")
    (memory / "b.md").write_text("second\n")
    (memory / "a.md").write_text("first\n")
    (memory / ".b.md.swp").write_text("an editor's\n")
    env = {**server.env(), "OPENAI_API_KEY": KEY}
    runner = spawn_loom(
        "agent", "start", "a", "--model", "openai/m", env=env, stdout=subprocess.DEVNULL
    )
    reap.append(runner)
    wait_for(lambda: (agent / "status").exists(), what="the runner to start")

    assert run_loom("send", "a", "one").returncode == 0
    assert system_of(server, 1) == (
        "Answer in French.\n\n# Memory: a.md\n\nfirst\n\n# Memory: b.md\n\nsecond"
    )

    # Each change keeps sizes and modification times, memory/'s own included.
    folder = memory.stat()
    rewrite(prompt, "Answer in German.\n")
    rewrite(memory / "b.md", "latest\n")
    (memory / "c.md").write_text("third\n")
    os.utime(memory, ns=(folder.st_atime_ns, folder.st_mtime_ns))
    assert run_loom("send", "a", "two").returncode == 0
    assert system_of(server, 2) == (
        "Answer in German.\n\n# Memory: a.md\n\nfirst\n\n"
        "# Memory: b.md\n\nlatest\n\n# Memory: c.md\n\nthird"
    )

    # Changed again at once, twice, as fast as a program can: the newest text goes out.
    rewrite(prompt, "Answer in Polish.\n")
    rewrite(prompt, "Answer in Danish.\n")
    (memory / "a.md").unlink()
    (memory / "c.md").unlink()
    assert run_loom("send", "a", "three").returncode == 0
    assert system_of(server, 3) == "Answer in Danish.\n\n# Memory: b.md\n\nlatest"

    prompt.unlink()
    (memory / "b.md").unlink()
    assert run_loom("send", "a", "four").returncode == 0
    assert system_of(server, 4) is None
    assert runner.poll() is None


def test_a_prompt_file_stat_cannot_look_at_fails_its_message_as_unreadable(
    loom_home: Path,
) -> None:
    agent = loom_home / "agents" / "a"
    agent.mkdir(parents=True)
    (agent / "prompt.md").symlink_to("prompt.md")  # a loop: stat fails with ELOOP
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="hi")
    assert r.returncode == 1
    assert f"prompt.md {agent / 'prompt.md'} is a symbolic link, not a regular file" in r.stderr
    [record] = (agent / "inbox" / ".failed").glob("*.error.json")
    assert json.loads(record.read_text())["error_type"] == "prompt_unreadable"
