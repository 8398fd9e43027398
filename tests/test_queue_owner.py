"""One owner per queue (SPEC 4): a second process for an agent or pipe instance is refused,
the lock dies with its holder, and `--stdin` beside a running owner is answered by it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import crash_records, run_loom, spawn_loom, wait_for
from home_kit import stop_all  # noqa: F401 - a fixture
from llm_server import LLMServer, Slow, Status

MODEL = "openai/gpt-test"
# Whatever a test starts in the background (supervisor, runners) is killed afterwards.
pytestmark = pytest.mark.usefixtures("stop_all")


def env_for(server: LLMServer) -> dict[str, str]:
    return {**server.env(), "OPENAI_API_KEY": "sk-test-owner", "LOOM_HTTP_TIMEOUT": "20"}


def msgs(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".msg"))
    except FileNotFoundError:
        return []


def bodies(directory: Path) -> list[str]:
    return [json.loads((directory / n).read_text())["body"] for n in msgs(directory)]


def read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def detached(name: str, model: str, env: dict[str, str] | None = None) -> int:
    """Start agent `name` under the supervisor; its runner's pid once it serves."""
    r = run_loom("agent", "start", name, "--model", model, "-d", env=env)
    assert r.returncode == 0, r.stderr
    folder = Path(os.environ["LOOM_HOME"]) / "agents" / name
    wait_for(lambda: read(folder / "status") == "idle", what=f"{name} idle")
    return int(read(folder / "pid"))


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_a_second_runner_is_refused_and_the_message_is_answered_once(
    server: LLMServer, loom_home: Path, reap: list
) -> None:
    env = env_for(server)
    w = loom_home / "agents/w"
    owner = detached("w", MODEL, env)
    server.script(Slow(3))
    assert run_loom("send", "w", "hi", env=env).returncode == 0
    wait_for(lambda: len(server.requests) == 1, what="the slow model call")
    second = spawn_loom("agent", "start", "w", "--model", MODEL, env=env)
    reap.append(second)
    try:
        code = second.wait(timeout=15)
    except subprocess.TimeoutExpired:
        code = None  # it served beside the first runner
    wait_for(lambda: msgs(w / "inbox/.processed"), timeout=20, what="the answer")
    assert bodies(w / "outbox") == ["echo: hi"]
    assert len(server.requests) == 1
    assert code == 1
    assert second.stderr is not None
    line = one_line(second.stderr.read().decode())
    assert f"agent 'w' is already served by pid {owner}" in line
    assert "loom send w" in line and "loom agent stop w" in line
    # The refused start left the running agent's files alone.
    assert read(w / "pid") == str(owner) and read(w / "mode") == "detached"


def test_two_pipe_serves_for_one_instance(loom_home: Path, reap: list) -> None:
    r = run_loom("pipe", "create", "tag", input='- map: "{n: n, tagged: `true`}"\n')
    assert r.returncode == 0, r.stderr
    first = spawn_loom("pipe", "serve", "tag")
    reap.append(first)
    p = loom_home / "pipes/tag"
    wait_for(lambda: read(p / "status") == "idle", what="the first pipe process")
    second = run_loom("pipe", "serve", "tag", timeout=20)
    assert second.returncode == 1
    line = one_line(second.stderr)
    assert f"pipe instance 'tag' is already served by pid {first.pid}" in line
    assert read(p / "pid") == str(first.pid) and read(p / "status") == "idle"
    assert run_loom("send", "tag", '{"n": 1}').returncode == 0
    wait_for(lambda: msgs(p / "outbox"), what="the first process's output")
    assert [json.loads(b) for b in bodies(p / "outbox")] == [{"n": 1, "tagged": True}]


def test_the_lock_dies_with_a_sigkilled_owner(loom_home: Path, reap: list) -> None:
    a = loom_home / "agents/a"
    killed = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(killed)
    wait_for(lambda: read(a / "status") == "idle", what="the first owner")
    assert read(a / "pid") == str(killed.pid)
    killed.kill()
    killed.wait()
    # Nothing is cleaned up after a SIGKILL: the pid file still names the dead runner.
    assert read(a / "pid") == str(killed.pid)
    heir = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(heir)
    wait_for(lambda: read(a / "pid") == str(heir.pid), timeout=5, what="the new owner")
    assert run_loom("send", "a", "after the kill").returncode == 0
    wait_for(lambda: bodies(a / "outbox") == ["after the kill"], what="the new owner's reply")
    third = run_loom("agent", "start", "a", "--model", "echo", "--serve", timeout=20)
    assert third.returncode == 1
    assert f"already served by pid {heir.pid}" in one_line(third.stderr)
    # The lock file names its holder and is the user's alone.
    assert read(a / "lock") == str(heir.pid)
    assert stat.S_IMODE((a / "lock").stat().st_mode) == 0o600


def test_stdin_beside_a_detached_runner_prints_its_reply(loom_home: Path) -> None:
    detached("w", "echo")
    w = loom_home / "agents/w"
    r = run_loom("agent", "start", "w", "--model", "echo", "--stdin", input="hi there\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi there\n", "")
    [sent] = msgs(w / "inbox/.processed")
    [reply] = [json.loads((w / "outbox" / n).read_text()) for n in msgs(w / "outbox")]
    assert reply["origin"].endswith(sent)
    assert read(w / "mode") == "detached"


def test_stdin_beside_a_detached_runner_reports_a_failure_reply(
    server: LLMServer, loom_home: Path
) -> None:
    env = env_for(server)
    detached("w", MODEL, env)
    server.script(Status(400, "the request was refused"))
    r = run_loom("agent", "start", "w", "--model", MODEL, "--stdin", input="hi", env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert "the request was refused" in r.stderr
    assert len(msgs(loom_home / "agents/w/inbox/.failed")) == 1


def test_stdin_with_another_model_than_the_running_one_is_refused(
    server: LLMServer, loom_home: Path
) -> None:
    owner = detached("w", "echo")
    w = loom_home / "agents/w"
    env = env_for(server)
    r = run_loom("agent", "start", "w", "--model", MODEL, "--stdin", input="hi", env=env)
    assert r.returncode == 1 and r.stdout == ""
    line = one_line(r.stderr)
    assert f"already served by pid {owner} with model 'echo', not '{MODEL}'" in line
    assert read(w / "model") == "echo"
    assert msgs(w / "inbox") == [] and msgs(w / "inbox/.processed") == []
    assert server.requests == []


def test_sigterm_while_waiting_for_the_owner_leaves_the_message_to_be_answered(
    server: LLMServer, loom_home: Path, reap: list
) -> None:
    env = env_for(server)
    detached("w", MODEL, env)
    server.script(Slow(2))
    asking = spawn_loom(
        "agent", "start", "w", "--model", MODEL, "--stdin", env=env, stdin=subprocess.PIPE
    )
    reap.append(asking)
    assert asking.stdin is not None and asking.stdout and asking.stderr
    asking.stdin.write(b"wait for me")
    asking.stdin.close()
    wait_for(lambda: len(server.requests) == 1, what="the owner's model call")
    asking.send_signal(signal.SIGTERM)
    assert asking.wait(timeout=10) == 143
    assert asking.stdout.read() == b""
    assert "stopped waiting" in one_line(asking.stderr.read().decode())
    outbox = loom_home / "agents/w/outbox"
    wait_for(lambda: bodies(outbox) == ["echo: wait for me"], what="the owner's answer")


def test_detach_beside_a_foreground_owner_is_refused_and_changes_nothing(
    loom_home: Path, reap: list
) -> None:
    a = loom_home / "agents/a"
    fg = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(fg)
    wait_for(lambda: read(a / "status") == "idle", what="the foreground owner")
    env = {"OPENAI_API_KEY": "sk-test-owner"}
    r = run_loom("agent", "start", "a", "--model", "openai/gpt-x", "-d", env=env, timeout=30)
    assert r.returncode == 1
    assert f"agent 'a' is already served by pid {fg.pid}" in one_line(r.stderr)
    assert (read(a / "mode"), read(a / "model"), read(a / "status")) == (
        "foreground",
        "echo",
        "idle",
    )
    assert not (loom_home / "supervisor.pid").exists()


def test_a_supervisor_watches_a_live_owner_instead_of_starting_a_second_runner(
    server: LLMServer, loom_home: Path, reap: list
) -> None:
    env = env_for(server)
    a = loom_home / "agents/a"
    server.script(Slow(3))
    fg = spawn_loom("agent", "start", "a", "--model", MODEL, env=env)
    reap.append(fg)
    wait_for(lambda: read(a / "status") == "idle", what="the foreground owner")
    assert run_loom("send", "a", "in flight", env=env).returncode == 0
    wait_for(lambda: len(server.requests) == 1, what="the owner's model call")
    # Files that hand the agent to a supervisor while its owner still runs.
    (a / "mode").write_text("detached\n")
    (a / "status").write_text("pending\n")
    sup = spawn_loom("supervisor", "run", env=env)
    reap.append(sup)
    log = loom_home / "supervisor/logs"
    wait_for(
        lambda: log.is_dir() and any('"adopted"' in p.read_text() for p in log.iterdir()),
        what="the supervisor adopting the owner",
    )
    wait_for(lambda: msgs(a / "inbox/.processed"), timeout=20, what="the owner's answer")
    assert bodies(a / "outbox") == ["echo: in flight"]
    assert crash_records(a) == [] and msgs(a / "inbox/.failed") == []
    assert read(a / "pid") == str(fg.pid)


def test_stdin_says_so_when_the_owner_stops_before_answering(
    server: LLMServer, loom_home: Path, reap: list
) -> None:
    env = env_for(server)
    a = loom_home / "agents/a"
    server.script(Slow(30))
    fg = spawn_loom("agent", "start", "a", "--model", MODEL, env=env)
    reap.append(fg)
    wait_for(lambda: read(a / "status") == "idle", what="the foreground owner")
    asking = spawn_loom(
        "agent", "start", "a", "--model", MODEL, "--stdin", env=env, stdin=subprocess.PIPE
    )
    reap.append(asking)
    assert asking.stdin is not None and asking.stdout and asking.stderr
    asking.stdin.write(b"never answered")
    asking.stdin.close()
    wait_for(lambda: len(server.requests) == 1, what="the owner's model call")
    fg.send_signal(signal.SIGTERM)  # it puts the message back and exits
    assert fg.wait(timeout=10) == 0
    assert asking.wait(timeout=10) == 1
    [waiting] = msgs(a / "inbox")
    line = one_line(asking.stderr.read().decode())
    assert f"agent 'a' stopped before answering; {waiting} waits in its inbox" in line
    assert asking.stdout.read() == b""


def test_ps_and_stop_go_by_the_queue_owner_not_a_stale_pid_file(
    loom_home: Path, reap: list
) -> None:
    """A pid file can outlive its process and name a pid another loom process took over
    since; the queue's lock still names the process that serves the agent."""
    a = loom_home / "agents" / "a"
    b = loom_home / "agents" / "b"
    owner = spawn_loom("agent", "start", "a", "--model", "echo")
    other = spawn_loom("agent", "start", "b", "--model", "echo")
    reap += [owner, other]
    wait_for(lambda: read(a / "status") == read(b / "status") == "idle", what="both agents")
    (a / "pid").write_text(f"{other.pid}\n")

    ps = json.loads(run_loom("agent", "ps", "--all", "--json").stdout)
    assert {row["name"]: row["pid"] for row in ps} == {"a": owner.pid, "b": other.pid}

    assert run_loom("agent", "stop", "a").returncode == 0
    wait_for(lambda: owner.poll() is not None, what="agent a to stop")
    assert other.poll() is None and read(b / "status") == "idle"
