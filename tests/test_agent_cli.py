"""`loom agent start` and friends, end to end through the real CLI with the echo model."""

from __future__ import annotations

import json
import os
import select
import signal
from pathlib import Path
from typing import IO

import pytest
from conftest import run_loom, spawn_loom, wait_for

from loom.store.message import new_message


def agent_dir(home: Path, name: str = "a") -> Path:
    return home / "agents" / name


def files(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".msg"))
    except FileNotFoundError:
        return []


def test_stdin_answer_streams_to_stdout_and_leaves_every_trace(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="summarise this\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "summarise this\n"
    a = agent_dir(loom_home)
    processed = files(a / "inbox" / ".processed")
    replies = files(a / "outbox")
    assert len(processed) == 1 and len(replies) == 1
    reply = json.loads((a / "outbox" / replies[0]).read_text())
    assert reply["from"] == "a" and reply["origin"] == processed[0]
    assert (a / "status").read_text().strip() == "stopped"
    assert (a / "model").read_text().strip() == "echo"
    turns = [
        json.loads(line)
        for f in (a / "conversations").iterdir()
        for line in f.read_text().splitlines()
    ]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    log = "".join(f.read_text() for f in (a / "logs").iterdir())
    assert processed[0] in log and '"event": "replied"' in log


def test_envelope_output_is_one_message_line_with_origin(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", "--envelope", input="hi")
    assert r.returncode == 0, r.stderr
    env = json.loads(r.stdout)
    assert env["body"] == "hi" and env["from"] == "a" and env["v"] == 1
    assert env["origin"] == files(agent_dir(loom_home) / "inbox" / ".processed")[0]


def test_an_envelope_on_stdin_keeps_its_id_and_extends_its_origin(loom_home: Path) -> None:
    upstream = new_message("x", "hello", origin="1-root.msg")
    r = run_loom(
        "agent",
        "start",
        "b",
        "--model",
        "echo",
        "--stdin",
        "--envelope",
        input=upstream.to_json() + "\n",
    )
    assert r.returncode == 0, r.stderr
    env = json.loads(r.stdout)
    assert env["body"] == "hello"
    assert env["origin"] == f"1-root.msg/{upstream.filename}"


def test_prompt_comes_before_stdin(loom_home: Path) -> None:
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "echo",
        "--stdin",
        "--prompt",
        "Summarise:",
        input="the text",
    )
    assert r.stdout == "Summarise:\n\nthe text\n"


def test_empty_stdin_is_a_usage_error_and_sends_nothing(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="")
    assert r.returncode == 2
    assert r.stderr.startswith("loom: stdin is empty")
    assert len(r.stderr.strip().splitlines()) == 1
    assert files(agent_dir(loom_home) / "inbox") == []


def test_hostile_names_get_one_clear_line(loom_home: Path) -> None:
    for bad in ["../x", "A", "a/b"]:
        r = run_loom("agent", "start", bad, "--model", "echo", "--stdin", input="x")
        assert r.returncode == 2, bad
        assert r.stderr.startswith("loom: invalid agent name"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (loom_home.parent / "x").exists()
    assert not (loom_home / "agents").exists() or os.listdir(loom_home / "agents") == []


def test_binary_garbage_and_a_20mb_body_are_answered(loom_home: Path) -> None:
    garbage = bytes(range(256)) * 4
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input=garbage)
    assert r.returncode == 0
    assert "\ufffd" in r.stdout
    big = ("x" * 1023 + "\n") * 20 * 1024
    r = run_loom("agent", "start", "big", "--model", "echo", "--stdin", input=big, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert len(r.stdout) == len(big)


def test_system_prompt_and_env_are_written_but_secrets_are_not(loom_home: Path) -> None:
    r = run_loom(
        "agent",
        "start",
        "a",
        "--model",
        "echo",
        "--stdin",
        "--system",
        "Be brief.",
        "--env",
        "REGION=eu",
        "--env",
        "SERVICE_TOKEN=tok-123",
        input="x",
    )
    assert r.returncode == 0, r.stderr
    a = agent_dir(loom_home)
    assert (a / "prompt.md").read_text() == "Be brief."
    env = (a / "env").read_text()
    assert "REGION=eu" in env and "tok-123" not in env


def test_serving_answers_sent_messages_in_order(loom_home: Path, reap: list) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    inbox = agent_dir(loom_home) / "inbox"
    wait_for(lambda: (agent_dir(loom_home) / "status").exists(), what="runner start")
    for i in range(5):
        assert run_loom("send", "a", f"message {i}").returncode == 0
    outbox = agent_dir(loom_home) / "outbox"
    wait_for(lambda: len(files(outbox)) == 5, what="5 replies")
    bodies = [json.loads((outbox / f).read_text())["body"] for f in files(outbox)]
    assert bodies == [f"message {i}" for i in range(5)]
    assert files(inbox) == []
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0
    assert out.decode().splitlines() == [f"message {i}" for i in range(5)]
    assert (agent_dir(loom_home) / "status").read_text().strip() == "stopped"
    assert (agent_dir(loom_home) / "pid").read_text().strip() == ""


def test_a_malformed_message_is_quarantined_and_serving_goes_on(
    loom_home: Path, reap: list
) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    a = agent_dir(loom_home)
    wait_for(lambda: (a / "status").exists(), what="runner start")
    bad = a / "inbox" / "1000-garbage.msg"
    tmp = a / "inbox" / ".tmp-garbage"
    tmp.write_bytes(b"\x00\x01 this is not json")
    os.utime(tmp, (1, 1))
    os.rename(tmp, bad)
    run_loom("send", "a", "still here")
    wait_for(lambda: len(files(a / "outbox")) == 1, what="the good message's reply")
    assert files(a / "inbox" / ".unreadable") == ["1000-garbage.msg"]
    assert p.poll() is None


def test_half_written_message_is_processed_once_complete(loom_home: Path, reap: list) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    a = agent_dir(loom_home)
    wait_for(lambda: (a / "status").exists(), what="runner start")
    msg = new_message("sh", "written slowly")
    data = msg.to_bytes()

    def log_text() -> str:
        return "".join(f.read_text() for f in (a / "logs").iterdir())

    with open(a / "inbox" / msg.filename, "wb") as f:
        f.write(data[:10])
        f.flush()
        wait_for(lambda: "half-written" in log_text(), what="the runner to see the half file")
        f.write(data[10:])
    wait_for(lambda: len(files(a / "outbox")) == 1, what="the reply")
    assert files(a / "inbox" / ".unreadable") == []


def test_a_newer_schema_version_stops_the_runner_and_keeps_the_file(
    loom_home: Path, reap: list
) -> None:
    a = agent_dir(loom_home)
    (a / "inbox").mkdir(parents=True)
    future = a / "inbox" / "1000-01FUTURE.msg"
    future.write_text('{"v": 2, "id": "01FUTURE", "from": "x", "ts": 1000, "body": "hi"}')
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 1
    assert "upgrade loom" in err.decode()
    assert future.exists()
    assert (a / "status").read_text().strip() in ("error", "stopped")


def test_stop_ends_a_foreground_runner_and_ps_tells_the_truth(loom_home: Path, reap: list) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    a = agent_dir(loom_home)
    wait_for(lambda: (a / "pid").exists() and (a / "pid").read_text().strip(), what="pid")
    ps = run_loom("agent", "ps", "--json")
    assert [(r["name"], r["status"]) for r in json.loads(ps.stdout)] == [("a", "idle")]
    r = run_loom("agent", "stop", "a")
    assert r.returncode == 0, r.stderr
    assert p.wait(timeout=10) == 0
    assert (a / "status").read_text().strip() == "stopped"
    assert json.loads(run_loom("agent", "ps", "--json").stdout) == []
    rows = json.loads(run_loom("agent", "ps", "--all", "--json").stdout)
    assert rows[0]["status"] == "stopped"


def test_ps_does_not_believe_a_dead_pid(loom_home: Path, reap: list) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    a = agent_dir(loom_home)
    # The runner writes its pid, then its status: both, before it is killed.
    wait_for(lambda: (a / "pid").exists() and (a / "pid").read_text().strip(), what="pid")
    status = a / "status"
    wait_for(lambda: status.exists() and status.read_text().strip() == "idle", what="idle")
    p.kill()
    p.wait()
    rows = json.loads(run_loom("agent", "ps", "--all", "--json").stdout)
    assert rows[0]["status"] == "error" and rows[0]["pid"] is None
    table = run_loom("agent", "ps", "--all").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "STATUS",
        "MODEL",
        "IN",
        "FLIGHT",
        "RESTARTS",
        "UPTIME",
        "PROJECT",
    ]
    assert table[1].split()[:4] == ["a", "error", "echo", "0/1"]


def test_stop_of_an_unknown_agent_fails_clearly(loom_home: Path) -> None:
    r = run_loom("agent", "stop", "ghost")
    assert r.returncode == 1
    assert r.stderr.startswith("loom: no agent or pipe named 'ghost'")


def test_logs_show_recent_lines_and_follow_new_ones(loom_home: Path, reap: list) -> None:
    run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="one")
    r = run_loom("agent", "logs", "a", "-n", "1", "--json")
    assert json.loads(r.stdout)["event"] == "replied"
    human = run_loom("agent", "logs", "a").stdout
    assert "claimed" in human and "replied" in human
    p = spawn_loom("agent", "logs", "a", "-f", "-n", "1", bufsize=0)  # select-safe reads
    reap.append(p)
    assert p.stdout is not None
    # The last old line comes first: from then on the follower is reading.
    assert "replied" in read_line(p.stdout)
    run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="two")
    assert "claimed" in read_line(p.stdout)


def read_line(stream: IO[bytes], timeout: float = 10.0) -> str:
    """One line from a child's stdout, failing the test instead of hanging."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        pytest.fail(f"no output within {timeout}s")
    return stream.readline().decode()


def test_send_validates_its_input(loom_home: Path) -> None:
    assert run_loom("send", "a").returncode == 2
    assert run_loom("send", "a", "x", "--stdin").returncode == 2
    assert run_loom("send", "../a", "x").returncode == 2
    r = run_loom("send", "a", "--create", "hello")
    assert r.returncode == 0
    path = Path(r.stdout.strip())
    assert path.parent == agent_dir(loom_home) / "inbox"
    assert json.loads(path.read_text())["body"] == "hello"


@pytest.mark.parametrize(
    "pair",
    ["V=x\nEVIL=2", "V=x\rOPENAI_BASE_URL=http://evil", "V=a\x1b[2Jb", "A\nB=1", "=1", "A B=1"],
)
def test_env_with_a_control_character_or_a_bad_key_is_refused(loom_home: Path, pair: str) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", "--env", pair, input="x")
    assert r.returncode == 2
    assert r.stderr.startswith("loom: --env ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (agent_dir(loom_home) / "env").exists()
