"""The supervisor (SPEC 8): detached agents, crashes, backoff, dead, adoption, one per home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import crash_records, run_loom, spawn_loom, wait_for

from loom.store.home import pid_is_loom
from loom.store.message import new_message
from loom.store.queue import Queue

FAST = {"LOOM_RESTART_BASE": "0.02", "LOOM_RESTART_JITTER": "0"}


def status(home: Path, name: str = "a") -> str:
    try:
        return (home / "agents" / name / "status").read_text().strip()
    except FileNotFoundError:
        return ""


def pid(home: Path, name: str = "a") -> int | None:
    raw = (home / "agents" / name / "pid").read_text().strip()
    return int(raw) if raw else None


def msgs(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".msg"))
    except FileNotFoundError:
        return []


def supervisor_pid(home: Path) -> int | None:
    try:
        return int((home / "supervisor.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


@pytest.fixture
def stop_all(loom_home: Path):
    """Whatever a test started in the background is ended afterwards."""
    yield
    sup = supervisor_pid(loom_home)
    if sup and pid_is_loom(sup):
        os.kill(sup, signal.SIGKILL)
    for pidfile in loom_home.glob("*/*/pid"):
        raw = pidfile.read_text().strip()
        if raw and pid_is_loom(int(raw)):
            os.kill(int(raw), signal.SIGKILL)


def start_detached(name: str = "a", *extra: str, env: dict[str, str] | None = None) -> None:
    r = run_loom("agent", "start", name, "--model", "echo", "-d", *extra, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{name} "), r.stdout


def test_detached_agent_answers_and_stop_is_final(loom_home: Path, stop_all: None) -> None:
    start_detached()
    assert status(loom_home) in ("idle", "running")
    assert supervisor_pid(loom_home) is not None
    run_loom("send", "a", "hello")
    outbox = loom_home / "agents/a/outbox"
    wait_for(lambda: len(msgs(outbox)) == 1, what="the reply")
    assert json.loads((outbox / msgs(outbox)[0]).read_text())["body"] == "hello"
    runner = pid(loom_home)
    assert run_loom("agent", "stop", "a").returncode == 0
    wait_for(lambda: runner is not None and not pid_is_loom(runner), what="runner exit")
    # An on-demand supervisor leaves once nothing is left, and never restarts a stopped agent.
    wait_for(lambda: not (loom_home / "supervisor.pid").exists(), what="supervisor exit")
    assert status(loom_home) == "stopped"
    assert crash_records(loom_home / "agents/a") == []


def logged(home: Path, event: str, name: str = "a") -> bool:
    """Whether agent `name`'s log holds an `event` record."""
    for path in (home / "agents" / name / "logs").glob("*.ndjson"):
        complete = path.read_text().split("\n")[:-1]  # a line being written is not read
        if any(json.loads(line)["event"] == event for line in complete):
            return True
    return False


def watches_with_inotify(process: int) -> bool:
    """Whether `process` holds an inotify descriptor (Linux shows it in /proc)."""
    fds = Path(f"/proc/{process}/fd")
    return any(os.readlink(fd) == "anon_inode:inotify" for fd in fds.iterdir())


@pytest.mark.parametrize("watch", ["poll", "inotify"])
def test_a_supervised_agent_answers_with_either_inbox_watcher(
    loom_home: Path, stop_all: None, watch: str
) -> None:
    # A rescan long after the test's deadline: only the watcher can wake the runner.
    env = {"LOOM_WATCH": watch, "LOOM_WORKER_RESCAN": "600"}
    start_detached(env=env)
    # The runner logs `serving` once its watcher is made, then waits on it for the inbox.
    wait_for(lambda: logged(loom_home, "serving"), what="the runner serving its inbox")
    runner = pid(loom_home)
    assert runner is not None and watches_with_inotify(runner) is (watch == "inotify")
    assert run_loom("send", "a", f"woken by {watch}", env=env).returncode == 0
    outbox = loom_home / "agents/a/outbox"
    wait_for(lambda: len(msgs(outbox)) == 1, what="the reply")
    assert json.loads((outbox / msgs(outbox)[0]).read_text())["body"] == f"woken by {watch}"


def test_sigkilled_runner_is_restarted_with_a_crash_record(loom_home: Path, stop_all: None) -> None:
    start_detached(env=FAST)
    first = pid(loom_home)
    assert first
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: crash_records(loom_home / "agents/a"), what="crash record")
    wait_for(
        lambda: status(loom_home) == "idle" and pid(loom_home) not in (None, first),
        what="the restart",
    )
    [record] = crash_records(loom_home / "agents/a")
    assert record["signal"] == "SIGKILL" and record["exitCode"] is None
    assert record["restartCount"] == 0 and record["nextRestartAt"]
    rows = json.loads(run_loom("agent", "ps", "--json").stdout)
    assert rows[0]["restarts"] == 1 and rows[0]["status"] == "idle"
    run_loom("send", "a", "still answering")
    wait_for(lambda: len(msgs(loom_home / "agents/a/outbox")) == 1, what="reply after restart")


def test_a_runner_that_always_fails_is_dead_after_ten_and_orphans_get_answers(
    loom_home: Path, reap: list
) -> None:
    a = loom_home / "agents/a"
    q = Queue(a / "inbox", a / "outbox").ensure()
    (a / "crashes").mkdir()
    for f, v in {"model": "openai/gpt-x", "mode": "detached", "restart": "always"}.items():
        (a / f).write_text(v + "\n")
    (a / "status").write_text("pending\n")
    orphan = new_message("cli", "stuck")
    q.send(orphan)
    q.claim(orphan.filename)
    # No OPENAI_API_KEY: the runner exits at once, every time.
    sup = spawn_loom("supervisor", "run", env={**FAST, "LOOM_RESTART_BASE": "0.0005"})
    reap.append(sup)
    wait_for(lambda: status(loom_home) == "dead", timeout=60, what="dead")
    crashes = crash_records(a)
    assert len(crashes) == 10
    last = crashes[-1]
    assert "OPENAI_API_KEY" in last["last_error"] and last["exitCode"] == 2
    reply = json.loads((a / "outbox" / msgs(a / "outbox")[0]).read_text())
    assert reply["error"] is True and reply["origin"] == orphan.filename
    assert msgs(a / "inbox/.failed") == [orphan.filename]
    log = "".join(p.read_text() for p in (loom_home / "supervisor/logs").iterdir())
    delays = [json.loads(ln)["restart_in_s"] for ln in log.splitlines() if '"crashed"' in ln]
    assert delays == sorted(delays) and delays[-1] > delays[0] * 100
    assert sup.poll() is None  # the supervisor itself is fine
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=10) == 0


def test_never_policy_is_not_restarted(loom_home: Path, stop_all: None) -> None:
    start_detached("a", "--restart", "never", env=FAST)
    first = pid(loom_home)
    assert first
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: status(loom_home) == "dead", what="dead")
    assert len(crash_records(loom_home / "agents/a")) == 1


def test_runners_outlive_a_killed_supervisor_and_are_adopted(
    loom_home: Path, stop_all: None, reap: list
) -> None:
    start_detached()
    runner = pid(loom_home)
    sup = supervisor_pid(loom_home)
    assert runner and sup
    os.kill(sup, signal.SIGKILL)
    wait_for(lambda: not pid_is_loom(sup), what="supervisor gone")
    run_loom("send", "a", "nobody supervises me")
    outbox = loom_home / "agents/a/outbox"
    wait_for(lambda: len(msgs(outbox)) == 1, what="reply without a supervisor")
    new_sup = spawn_loom("supervisor", "run")
    reap.append(new_sup)
    log_dir = loom_home / "supervisor/logs"
    wait_for(
        lambda: (
            log_dir.is_dir() and '"adopted"' in "".join(p.read_text() for p in log_dir.iterdir())
        ),
        what="adoption",
    )
    assert pid(loom_home) == runner
    run_loom("send", "a", "adopted")
    wait_for(lambda: len(msgs(outbox)) == 2, what="reply after adoption")
    os.kill(runner, signal.SIGKILL)
    wait_for(lambda: pid(loom_home) not in (None, runner), timeout=15, what="restart of adopted")


def test_two_supervisors_started_at_once_exactly_one_wins(loom_home: Path, reap: list) -> None:
    loom_home.mkdir(parents=True, exist_ok=True)
    procs = [spawn_loom("supervisor", "run") for _ in range(3)]
    reap.extend(procs)
    wait_for(lambda: sum(p.poll() is not None for p in procs) == 2, what="two losers exit")
    losers = [p for p in procs if p.poll() is not None]
    winner = next(p for p in procs if p.poll() is None)
    for p in losers:
        assert p.returncode == 1
        assert b"a supervisor already runs" in p.stderr.read()
    assert supervisor_pid(loom_home) == winner.pid


def test_a_stale_supervisor_pid_file_is_replaced(loom_home: Path, stop_all: None) -> None:
    loom_home.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (loom_home / "supervisor.pid").write_text(f"{dead.pid}\n")
    start_detached()
    assert supervisor_pid(loom_home) not in (None, dead.pid)


def test_detached_agents_refuse_credentials_on_the_command_line(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "-d", "--env", "OPENAI_API_KEY=sk-1")
    assert r.returncode == 2
    assert "export OPENAI_API_KEY" in r.stderr and "sk-1" not in r.stderr
