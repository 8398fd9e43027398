"""`loom supervisor status|stop|restart`, the warning about a supervisor's settings, the
journal's lines, the last metrics an exiting supervisor writes, and `supervisor run`
taking over from one started on demand."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import crash_records, run_loom, spawn_loom, wait_for
from home_kit import stop_all  # noqa: F401
from llm_server import LLMServer

from loom.store.home import pid_is_loom
from loom.store.message import new_message
from loom.store.queue import Queue

pytestmark = pytest.mark.usefixtures("stop_all")


def read(home: Path, name: str, field: str) -> str:
    try:
        return (home / "agents" / name / field).read_text().strip()
    except FileNotFoundError:
        return ""


def supervisor_pid(home: Path) -> int | None:
    try:
        return int((home / "supervisor.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def start(name: str, *extra: str, env: dict[str, str] | None = None) -> str:
    r = run_loom("agent", "start", name, *extra, "-d", env=env)
    assert r.returncode == 0, r.stderr
    return r.stderr


def metrics(home: Path) -> dict[str, float]:
    samples = {}
    for line in (home / "metrics.prom").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def test_status_stop_and_restart(loom_home: Path) -> None:
    r = run_loom("supervisor", "status")
    assert r.returncode == 3 and r.stdout.startswith("no supervisor runs for")
    start("a", "--model", "echo")
    start("b", "--model", "echo")
    sup = supervisor_pid(loom_home)
    runners = {read(loom_home, n, "pid") for n in ("a", "b")}
    wait_for(lambda: json.loads(run_loom("supervisor", "status", "--json").stdout)["children"] == 2)
    r = run_loom("supervisor", "status")
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert fields["pid"] == str(sup) and fields["mode"] == "on-demand"
    assert fields["processes"] == "2" and fields["since"].startswith("20")
    assert fields["settings"] == "differ from this shell's: none"

    r = run_loom("supervisor", "stop")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"stopped the supervisor (pid {sup}) and 2 processes"
    assert sup is not None and not pid_is_loom(sup)
    assert not any(pid_is_loom(int(p)) for p in runners)
    # Stopped with the supervisor, not for good: they wait for the next one, no crash.
    assert [read(loom_home, n, "status") for n in ("a", "b")] == ["pending", "pending"]
    assert not crash_records(loom_home / "agents/a")
    assert run_loom("supervisor", "status").returncode == 3

    r = run_loom("supervisor", "restart")
    assert r.returncode == 0, r.stderr
    new = supervisor_pid(loom_home)
    assert r.stdout.strip() == f"restarted the supervisor (now pid {new}): agent a, agent b"
    assert [read(loom_home, n, "status") for n in ("a", "b")] == ["idle", "idle"]
    assert run_loom("send", "a", "back").returncode == 0
    wait_for(lambda: list((loom_home / "agents/a/outbox").glob("*.msg")), what="a reply")

    # A restart while one runs stops it first; a stopped agent stays stopped.
    assert run_loom("agent", "stop", "b").returncode == 0
    r = run_loom("supervisor", "restart")
    assert r.returncode == 0, r.stderr
    assert f"stopped pid {new}, " in r.stdout and r.stdout.strip().endswith(": agent a")
    assert read(loom_home, "b", "status") == "stopped"
    assert run_loom("supervisor", "stop").stdout.strip().endswith("and 1 process")
    assert run_loom("supervisor", "stop").stdout.strip() == "no supervisor was running"


def test_a_supervisor_with_other_settings_is_named_and_restart_applies_the_new_ones(
    loom_home: Path,
) -> None:
    with LLMServer() as old, LLMServer() as new:
        first = {"OPENAI_BASE_URL": f"{old.url}/v1", "OPENAI_API_KEY": "sk-first-0123456789"}
        assert start("a", "--model", "openai/gpt-x", env=first) == ""
        assert start("keep", "--model", "echo", env=first) == ""  # keeps the supervisor
        second = {"OPENAI_BASE_URL": f"{new.url}/v1", "OPENAI_API_KEY": "sk-first-0123456789"}
        # The agent restarted from a shell with a new base URL still gets the old one.
        assert run_loom("agent", "stop", "a").returncode == 0
        warned = start("a", "--model", "openai/gpt-x", env=second)
        [line] = warned.splitlines()
        sup = supervisor_pid(loom_home)
        assert line == (
            f"loom: warning: the supervisor (pid {sup}) runs with other settings than this "
            "shell (OPENAI_BASE_URL); what it starts gets its settings: run `loom supervisor "
            "restart` to use this shell's"
        )
        assert run_loom("send", "a", "to which server?").returncode == 0
        wait_for(lambda: len(old.requests) == 1, what="the old server's request")
        assert new.requests == []
        # A changed key is named the same way, its value never.
        third = {**second, "OPENAI_API_KEY": "sk-second-9876543210"}
        r = run_loom("supervisor", "status", env=third)
        assert "differ from this shell's: OPENAI_API_KEY, OPENAI_BASE_URL" in r.stdout
        saved = (loom_home / "supervisor.json").read_text()
        for text in (r.stdout, r.stderr, warned, saved):
            assert "sk-" not in text and "127.0.0.1" not in text

        r = run_loom("supervisor", "restart", env=second)
        assert r.returncode == 0, r.stderr
        assert run_loom("send", "a", "and now?", env=second).returncode == 0
        wait_for(lambda: len(new.requests) == 1, what="the new server's request")
        assert len(old.requests) == 1
        r = run_loom("agent", "start", "c", "--model", "echo", "-d", env=second)
        assert r.returncode == 0 and r.stderr == ""


def test_journal_lines_name_the_process(loom_home: Path) -> None:
    a = loom_home / "agents/w1"
    Queue(a / "inbox", a / "outbox").ensure()
    for f, v in {"model": "openai/gpt-x", "mode": "detached", "restart": "always"}.items():
        (a / f).write_text(v + "\n")
    (a / "status").write_text("pending\n")
    # No OPENAI_API_KEY: the runner exits 2 at once, every time, until it is dead.
    sup = spawn_loom("supervisor", "run", env={"LOOM_RESTART_BASE": "0.001"})
    try:
        wait_for(lambda: read(loom_home, "w1", "status") == "dead", timeout=60, what="dead")
    finally:
        sup.send_signal(signal.SIGTERM)
        _, err = sup.communicate(timeout=30)
    lines = err.decode().splitlines()
    crashed = [ln for ln in lines if "crashed" in ln]
    assert len(crashed) == 9
    assert all(
        re.fullmatch(
            r"loom: supervisor: agent w1 crashed \(exit 2\), restarting in (\d+ms|\d+\.\ds)", ln
        )
        for ln in crashed
    ), crashed
    assert lines[-1].startswith("loom: supervisor: agent w1 is dead, not restarted: it failed 10")
    assert not [ln for ln in lines if ln.startswith("loom: supervisor: crashed")]


def test_an_exiting_supervisor_writes_its_last_metrics(loom_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "loom.yml").write_text("version: 1\nagents:\n  - name: a\n    model: echo\n")
    assert run_loom("up", "-d", cwd=work).returncode == 0
    wait_for(lambda: metrics(loom_home).get('loom_process_up{process="a",kind="agent"}') == 1)
    assert metrics(loom_home)["loom_supervisor_up"] == 1
    sup = supervisor_pid(loom_home)
    assert run_loom("down", cwd=work).returncode == 0
    before = time.time()
    wait_for(lambda: sup is not None and not pid_is_loom(sup), what="the supervisor's exit")
    last = metrics(loom_home)
    assert last['loom_process_up{process="a",kind="agent"}'] == 0
    assert last["loom_supervisor_up"] == 0
    assert before - 5 < last["loom_metrics_timestamp_seconds"] <= time.time()
    assert last["loom_metrics_updated_timestamp_seconds"] == last["loom_metrics_timestamp_seconds"]


def test_supervisor_run_takes_over_from_an_on_demand_one(loom_home: Path) -> None:
    start("a", "--model", "echo")
    on_demand = supervisor_pid(loom_home)
    runner = int(read(loom_home, "a", "pid"))
    service = spawn_loom("supervisor", "run")
    try:
        wait_for(lambda: supervisor_pid(loom_home) == service.pid, what="the takeover")
        assert on_demand is not None
        wait_for(lambda: not pid_is_loom(on_demand), what="the on-demand supervisor's exit")
        status = json.loads(run_loom("supervisor", "status", "--json").stdout)
        assert status["pid"] == service.pid and status["mode"] == "run"
        wait_for(lambda: json.loads(run_loom("supervisor", "status", "--json").stdout)["children"])
        # Its processes ran on, adopted; no crash.
        assert int(read(loom_home, "a", "pid")) == runner and pid_is_loom(runner)
        assert not crash_records(loom_home / "agents/a")
        r = run_loom("supervisor", "restart")
        assert r.returncode == 1 and "systemctl --user restart loom" in r.stderr
        # SIGTERM (systemctl stop) ends it and its processes, none left behind.
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 0
    assert f"taking over from the on-demand supervisor (pid {on_demand})" in err.decode()
    assert not pid_is_loom(runner)
    assert read(loom_home, "a", "status") == "pending"
    assert not (loom_home / "supervisor.pid").exists()


def test_sighup_rescans_at_once(loom_home: Path) -> None:
    # A rescan long after the test's deadline: only the signal can make it look now.
    sup = spawn_loom("supervisor", "run", env={"LOOM_SUPERVISOR_RESCAN": "600"})
    try:
        wait_for(lambda: supervisor_pid(loom_home) == sup.pid, what="the supervisor")
        a = loom_home / "agents/h"
        Queue(a / "inbox", a / "outbox").ensure()
        for f, v in {"model": "echo", "mode": "detached", "status": "pending"}.items():
            (a / f).write_text(v + "\n")
        Queue(a / "inbox", a / "outbox").send(new_message("cli", "after the hangup"))
        os.kill(sup.pid, signal.SIGHUP)
        wait_for(lambda: list((a / "outbox").glob("*.msg")), what="the reply")
        assert read(loom_home, "h", "status") in ("idle", "running")
        os.kill(sup.pid, signal.SIGHUP)  # again, while all runs: nothing changes
        assert sup.poll() is None
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.communicate(timeout=30)
    assert sup.returncode == 0


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_the_documented_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    guide = (ROOT / "docs/operations.md").read_text()
    [unit] = re.findall(r"```ini\n# ~/.config/systemd/user/loom.service\n(.*?)```", guide, re.S)
    assert "KillMode=mixed" in unit and "ExecReload=kill -HUP $MAINPID" in unit
    # The unit names the user's loom; verify checks that what it runs exists.
    loom = Path(sys.executable).parent / "loom"
    (tmp_path / "loom.service").write_text(unit.replace("%h/.local/bin/loom", str(loom)))
    r = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "loom.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


@pytest.mark.parametrize("damage", ["garbage", "fifo", "other pid"])
def test_a_broken_pid_file_does_not_hide_the_running_supervisor(
    loom_home: Path, damage: str
) -> None:
    start("a", "--model", "echo")
    sup = wait_for(lambda: supervisor_pid(loom_home), what="the supervisor")
    pid_file = loom_home / "supervisor.pid"
    pid_file.unlink()
    if damage == "fifo":
        os.mkfifo(pid_file)
    else:
        pid_file.write_text("\x00\xffnot a pid\n" if damage == "garbage" else f"{os.getpid()}\n")
    try:
        r = run_loom("supervisor", "status", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["pid"] == sup
        r = run_loom("supervisor", "stop")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"stopped the supervisor (pid {sup})")
        assert not pid_is_loom(sup)
    finally:
        pid_file.unlink()  # the teardown reads it, and a FIFO would block that read
