"""Starting what runs, restarting, removing, everyone's logs, and the end of a foreground
answer (Ctrl-C, SIGTERM, stdin without --stdin): end to end through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import run_loom, spawn_loom, wait_for
from llm_server import Hang, LLMServer

from loom.store.home import pid_alive

MODEL = "openai/gpt-test"


def openai_env(server: LLMServer) -> dict[str, str]:
    return {**server.env(), "OPENAI_API_KEY": "sk-test-lifecycle", "LOOM_HTTP_TIMEOUT": "30"}


def read(path: Path) -> str:
    return path.read_text().strip()


def msgs(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".msg"))
    except FileNotFoundError:
        return []


def detached(name: str, *extra: str) -> int:
    r = run_loom("agent", "start", name, "--model", "echo", "-d", *extra)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split("(pid ")[1].split(")")[0])


def stop_all(home: Path) -> None:
    for proc in (home / "agents").iterdir():
        run_loom("agent", "stop", proc.name)


# -- starting what already runs ------------------------------------------------------


def test_starting_a_running_agent_with_the_same_settings_leaves_it_alone(
    loom_home: Path,
) -> None:
    first = detached("d2")
    again = run_loom("agent", "start", "d2", "--model", "echo", "-d", timeout=10)
    assert again.returncode == 0
    assert again.stdout == ""
    assert again.stderr.splitlines() == [f"d2 is already running (pid {first})"]
    assert read(loom_home / "agents/d2/pid") == str(first)
    assert pid_alive(first)
    # And the stop still finds it: no orphan.
    assert run_loom("agent", "stop", "d2").returncode == 0
    wait_for(lambda: not pid_alive(first), what="the runner to exit")
    assert read(loom_home / "agents/d2/status") == "stopped"


def test_starting_a_running_agent_with_other_settings_restarts_it_with_them(
    loom_home: Path,
) -> None:
    first = detached("d2")
    r = run_loom("agent", "start", "d2", "--model", "echo", "-d", "--rate", "10/s", "-c", "2")
    assert r.returncode == 0, r.stderr
    second = int(read(loom_home / "agents/d2/pid"))
    assert r.stdout.strip() == f"restarted d2 (pid {second}): concurrency, rate changed"
    assert second != first
    assert not pid_alive(first)
    assert read(loom_home / "agents/d2/rate") == "10/s"
    assert read(loom_home / "agents/d2/concurrency") == "2"
    run_loom("send", "d2", "after the restart")
    wait_for(lambda: msgs(loom_home / "agents/d2/outbox"), what="the new runner's reply")
    assert run_loom("agent", "stop", "d2").returncode == 0
    wait_for(lambda: not pid_alive(second), what="the new runner to exit")


def test_a_new_system_prompt_restarts_and_the_stored_one_is_kept_when_none_is_given(
    loom_home: Path,
) -> None:
    first = detached("d2", "--system", "be brief")
    again = run_loom("agent", "start", "d2", "--model", "echo", "-d")
    assert again.stderr.startswith("d2 is already running")
    r = run_loom("agent", "start", "d2", "--model", "echo", "-d", "--system", "be long")
    assert "system prompt changed" in r.stdout
    assert not pid_alive(first)
    assert read(loom_home / "agents/d2/prompt.md") == "be long"
    stop_all(loom_home)


def test_a_detached_start_of_an_agent_served_in_the_foreground_is_refused(
    loom_home: Path, reap: list
) -> None:
    fg = spawn_loom("agent", "start", "a", "--model", "echo", "--serve")
    reap.append(fg)
    wait_for(lambda: (loom_home / "agents/a/status").exists(), what="the foreground runner")
    wait_for(lambda: read(loom_home / "agents/a/status") == "idle", what="idle")
    r = run_loom("agent", "start", "a", "--model", "echo", "-d", "--rate", "1/s")
    assert r.returncode == 1
    assert f"already served by pid {fg.pid}" in r.stderr
    assert fg.poll() is None
    assert not (loom_home / "agents/a/rate").exists()  # the refused settings not written


# -- restart and rm ------------------------------------------------------------------


def test_restart_stops_and_starts_with_the_stored_settings(loom_home: Path) -> None:
    first = detached("a", "--rate", "5/s")
    r = run_loom("restart", "a")
    assert r.returncode == 0, r.stderr
    second = int(read(loom_home / "agents/a/pid"))
    assert r.stdout.strip() == f"restarted a (pid {second})"
    assert second != first and not pid_alive(first)
    assert read(loom_home / "agents/a/rate") == "5/s"
    # A stopped one is started again.
    run_loom("agent", "stop", "a")
    wait_for(lambda: not pid_alive(second), what="the stop")
    r = run_loom("restart", "a")
    assert r.returncode == 0, r.stderr
    third = int(read(loom_home / "agents/a/pid"))
    assert pid_alive(third)
    stop_all(loom_home)


@pytest.mark.parametrize("instance", ["tidy", "dedupe-by-id~a->b"])
def test_restart_of_a_pipe_instance_served_once_by_hand(
    loom_home: Path, reap: list, instance: str
) -> None:
    served = spawn_loom("pipe", "start", "dedupe-by-id", "--instance", instance)
    reap.append(served)
    folder = loom_home / "pipes" / instance.replace("->", "→")
    wait_for(lambda: (folder / "status").is_file() and read(folder / "status") == "idle")
    served.terminate()
    served.wait(timeout=10)
    r = run_loom("restart", instance)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"restarted {instance} (pid ")
    assert run_loom("send", instance, '{"id": 1}').returncode == 0
    wait_for(lambda: msgs(folder / "outbox"), what="the restarted pipe's result")
    assert run_loom("supervisor", "stop").returncode == 0


def test_restart_of_an_unknown_name_says_so(loom_home: Path) -> None:
    r = run_loom("restart", "nobody")
    assert r.returncode == 1
    assert r.stderr.startswith("loom: no agent or pipe named 'nobody'")


def test_rm_refuses_pending_messages_then_removes_with_force(loom_home: Path) -> None:
    (loom_home / "agents/a").mkdir(parents=True)
    (loom_home / "agents/a/model").write_text("echo\n")
    (loom_home / "agents/a/status").write_text("stopped\n")
    assert run_loom("send", "a", "one").returncode == 0
    assert run_loom("send", "a", "two").returncode == 0
    r = run_loom("rm", "a")
    assert r.returncode == 1
    [line] = r.stderr.splitlines()
    assert "a has 2 pending messages" in line and "--force" in line
    assert len(msgs(loom_home / "agents/a/inbox")) == 2
    r = run_loom("rm", "a", "--force")
    assert r.returncode == 0, r.stderr
    assert not (loom_home / "agents/a").exists()


def test_rm_stops_a_running_agent_and_needs_force_without_a_terminal(loom_home: Path) -> None:
    pid = detached("a")
    r = run_loom("rm", "a")
    assert r.returncode == 2
    assert "--force" in r.stderr
    assert pid_alive(pid)
    r = run_loom("rm", "a", "-f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("removed a ")
    assert not pid_alive(pid)
    assert not (loom_home / "agents/a").exists()
    assert "a" not in run_loom("agent", "ps", "--all").stdout.split()
    # The supervisor outlives the removal and still starts agents.
    other = detached("b")
    assert pid_alive(other)
    stop_all(loom_home)


# -- loom logs -----------------------------------------------------------------------


def test_logs_shows_every_process_prefixed_with_its_name(loom_home: Path) -> None:
    detached("a")
    detached("long-name")
    run_loom("send", "a", "hello")
    wait_for(lambda: msgs(loom_home / "agents/a/outbox"), what="a's reply")
    r = run_loom("logs", "-n", "50")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("a         | ") and " replied " in line for line in lines)
    assert any(line.startswith("long-name | ") for line in lines)
    stamps = [line.split("| ", 1)[1].split()[0] for line in lines]
    assert stamps == sorted(stamps)
    stop_all(loom_home)


def test_logs_in_a_weave_folder_shows_only_the_weave(loom_home: Path, tmp_path: Path) -> None:
    detached("outsider")
    project = tmp_path / "project"
    project.mkdir()
    (project / "loom.yml").write_text("version: 1\nagents:\n  - name: inside\n    model: echo\n")
    assert run_loom("up", "-d", cwd=project).returncode == 0
    r = run_loom("logs", cwd=project)
    assert r.returncode == 0, r.stderr
    names = {line.split(" | ")[0].strip() for line in r.stdout.splitlines()}
    assert names == {"inside"}
    every = run_loom("logs", "--all", cwd=project)
    assert {line.split(" | ")[0].strip() for line in every.stdout.splitlines()} == {
        "inside",
        "outsider",
    }
    run_loom("down", cwd=project)
    stop_all(loom_home)


def test_logs_follow_prints_new_lines_of_any_process(loom_home: Path, reap: list) -> None:
    detached("a")
    detached("b")
    p = spawn_loom("logs", "-f", "-n", "1")
    reap.append(p)
    seen: list[str] = []

    def collect() -> None:
        assert p.stdout is not None
        for raw in p.stdout:
            seen.append(raw.decode())

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    # The recent line of each first: from then on it follows.
    wait_for(lambda: len(seen) >= 2, what="the recent lines")
    run_loom("send", "b", "hello")
    wait_for(
        lambda: any(line.startswith("b | ") and " replied " in line for line in seen),
        what="b's reply in the followed logs",
    )
    # One started after the follow began joins in, from its first line.
    detached("late")
    run_loom("send", "late", "hello")
    wait_for(
        lambda: any(line.startswith("late | ") and " replied " in line for line in seen),
        what="the later process's reply in the followed logs",
    )
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=10) == 130
    reader.join(timeout=10)
    stop_all(loom_home)


# -- the end of a foreground answer ----------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_on_stdin_fails_the_message_as_interrupted(
    server: LLMServer, loom_home: Path, reap: list, signum: int, code: int
) -> None:
    server.script(Hang(30))
    p = spawn_loom(
        "agent", "start", "a", "--model", MODEL, "--stdin", env=openai_env(server),
        stdin=subprocess.PIPE,
    )  # fmt: skip
    reap.append(p)
    assert p.stdin is not None
    p.stdin.write(b"a long question")
    p.stdin.close()
    wait_for(lambda: len(server.requests) == 1, what="the model call")
    p.send_signal(signum)
    assert p.wait(timeout=10) == code
    inbox = loom_home / "agents/a/inbox"
    assert msgs(inbox) == [] and msgs(inbox / ".in-progress") == []
    [failed] = msgs(inbox / ".failed")
    record = json.loads((inbox / ".failed" / f"{failed}.error.json").read_text())
    assert record["error_type"] == "interrupted"
    assert signal.Signals(signum).name in record["last_error"]
    [reply] = msgs(loom_home / "agents/a/outbox")
    data = json.loads((loom_home / "agents/a/outbox" / reply).read_text())
    assert data["error"] is True and data["origin"].endswith(failed)
    assert p.stderr is not None
    assert "interrupted" in p.stderr.read().decode()
    # Nobody answers it later.
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="next")
    assert r.stdout.strip() == "next"
    assert msgs(inbox / ".failed") == [failed]


# -- stdin without --stdin -----------------------------------------------------------


def test_piped_stdin_is_answered_without_the_flag(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", input="hi", timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"
    assert read(loom_home / "agents/a/status") == "stopped"


def test_a_file_on_stdin_is_answered_too(loom_home: Path, tmp_path: Path) -> None:
    question = tmp_path / "q.txt"
    question.write_text("from a file\n")
    with question.open("rb") as f:
        p = spawn_loom("agent", "start", "a", "--model", "echo", stdin=f)
        out, _ = p.communicate(timeout=20)
    assert p.returncode == 0
    assert out == b"from a file\n"


def test_a_prompt_without_a_terminal_is_answered_and_the_command_ends(loom_home: Path) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo", "--prompt", "x")
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert out == b"x\n"


def test_serve_serves_the_inbox_whatever_stdin_is(loom_home: Path, reap: list) -> None:
    p = spawn_loom("agent", "start", "a", "--model", "echo", "--serve", stdin=subprocess.PIPE)
    reap.append(p)
    wait_for(
        lambda: (
            (loom_home / "agents/a/status").exists()
            and read(loom_home / "agents/a/status") == "idle"
        ),
        what="the runner to serve",
    )
    run_loom("send", "a", "queued")
    wait_for(lambda: msgs(loom_home / "agents/a/outbox"), what="the reply")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 0


def test_stdin_and_serve_together_is_a_usage_error(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", "--serve")
    assert r.returncode == 2
    assert r.stderr.startswith("loom: give --stdin")


def test_rm_refuses_a_process_folder_that_is_a_symbolic_link(
    loom_home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "status").write_text("running\n")
    (loom_home / "agents").mkdir(parents=True, exist_ok=True)
    (loom_home / "agents/r2").symlink_to(elsewhere)
    r = run_loom("rm", "r2", "--force")
    assert r.returncode == 1
    [line] = r.stderr.splitlines()
    assert "symbolic link" in line and "nothing was removed" in line
    assert (loom_home / "agents/r2").is_symlink()
    assert (elsewhere / "status").read_text() == "running\n"  # nothing written through it


def test_logs_refuse_a_negative_line_count(loom_home: Path) -> None:
    for args in (["logs", "--all", "-n", "-1"], ["agent", "logs", "a", "-n", "-1"]):
        r = run_loom(*args)
        assert r.returncode == 2 and "-1" in r.stderr and r.stdout == "", args
