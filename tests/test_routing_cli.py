"""`loom route`, `loom unroute`, `loom routes` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import run_loom, spawn_loom, wait_for

from loom.routing import Router
from loom.store.home import ProcessDir
from loom.store.message import new_message
from loom.store.queue import write_message

Procs = list[subprocess.Popen[bytes]]


def agents(home: Path, *names: str) -> None:
    for name in names:
        ProcessDir(home, "agents", name).create()


def test_route_routes_and_unroute(loom_home: Path) -> None:
    agents(loom_home, "a", "b")
    done = run_loom("route", "a", "--to", "b", "--when", "severity >= `3`")
    assert (done.returncode, done.stdout, done.stderr) == (0, "routed a → b\n", "")
    shown = run_loom("routes")
    header, row = shown.stdout.splitlines()
    assert header.split() == ["FROM", "PIPE", "TO", "WHEN", "FORWARDED", "LAST", "HELD"]
    assert row.split() == ["a", "-", "b", "severity", ">=", "`3`", "0", "-", "no"]
    [entry] = json.loads(run_loom("routes", "--json").stdout)
    assert entry["from"] == "a" and entry["to"] == "b" and entry["forwarded"] == 0
    done = run_loom("unroute", "a", "--to", "b")
    assert done.returncode == 0 and done.stdout == "unrouted a → b\n"
    assert json.loads((loom_home / "routes.json").read_text()) == []


def test_routes_shows_the_router_counters(loom_home: Path) -> None:
    agents(loom_home, "a", "b")
    assert run_loom("route", "a", "--to", "b", "--limit", "1").returncode == 0
    router = Router(loom_home)
    for body in ("one", "two"):
        write_message(loom_home / "agents" / "a" / "outbox", new_message("a", body))
    router.pump()
    router.write_stats()
    row = run_loom("routes").stdout.splitlines()[1]
    assert re.fullmatch(r"a\s+-\s+b\s+-\s+1\s+\S+Z\s+held \(1 waiting\)", row), row


def test_errors_are_one_sentence_with_the_right_exit_code(loom_home: Path) -> None:
    agents(loom_home, "a", "b")
    missing = run_loom("unroute", "a", "--to", "b")
    assert missing.returncode == 1
    assert missing.stderr == "loom: no route a → b; see 'loom routes'\n"
    unknown = run_loom("route", "a", "--to", "ghost")
    assert unknown.returncode == 1
    assert unknown.stderr == "loom: unknown agent 'ghost'; start it first or check the name\n"
    assert run_loom("route", "a", "--to", "b").returncode == 0
    before = (loom_home / "routes.json").read_bytes()
    cycle = run_loom("route", "b", "--to", "a")
    assert cycle.returncode == 2
    assert cycle.stderr == "loom: circular route detected: a → b → a\n"
    assert (loom_home / "routes.json").read_bytes() == before
    nothing = run_loom("route", "a")
    assert nothing.returncode == 2 and "needs a destination" in nothing.stderr


def test_concurrent_route_calls_keep_every_edge(loom_home: Path, reap: Procs) -> None:
    names = [f"d{i}" for i in range(8)]
    agents(loom_home, "hub", *names)
    procs = [spawn_loom("route", "hub", "--to", name) for name in names]
    reap.extend(procs)
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    edges = json.loads((loom_home / "routes.json").read_text())
    assert sorted(e["to"] for e in edges) == names


_FAKE_SUPERVISOR = textwrap.dedent(
    """
    import fcntl, os, signal, sys, time
    home = sys.argv[1]
    lock = open(os.path.join(home, "supervisor.lock"), "ab")
    fcntl.flock(lock, fcntl.LOCK_EX)
    def hup(signum, frame):
        open(os.path.join(home, "got-hup"), "w").close()
    signal.signal(signal.SIGHUP, hup)
    with open(os.path.join(home, "supervisor.pid"), "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(0.05)
    """
)


def test_route_nudges_a_running_supervisor(loom_home: Path, reap: Procs) -> None:
    agents(loom_home, "a", "b")
    # A stand-in that holds the supervisor lock; "loom" in its command line like the real one.
    fake = subprocess.Popen([sys.executable, "-c", _FAKE_SUPERVISOR, str(loom_home), "loom"])
    reap.append(fake)
    wait_for(lambda: (loom_home / "supervisor.pid").exists(), what="the fake supervisor")
    assert run_loom("route", "a", "--to", "b").returncode == 0
    wait_for(lambda: (loom_home / "got-hup").exists(), what="SIGHUP")
