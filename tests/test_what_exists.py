"""`ps`, `stats`, `trace` and `gc` agree on which agents and pipe instances exist (SPEC 3).

The home here is an odd one, as crashes, old versions and hands on the keyboard leave
them: a folder with a queue but no status, a file and a definition-only folder where
processes live, folders whose names loom would never create.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from conftest import run_loom

from loom.store.message import new_message
from loom.store.queue import write_message

STARTED = {"alpha", "p~alpha→beta"}
UNSTARTED = {"waiting", "half"}  # a queue and no status: `loom send` before a start, a crash
OLD = time.time() - 40 * 86400


def _folder(home: Path, kind: str, name: str, sub: str) -> Path:
    path = home / kind / name / sub
    path.mkdir(parents=True, exist_ok=True)
    return path


def _odd_home(home: Path) -> str:
    """Every folder, valid or not, gets a copy of one message and an old log file."""
    msg = new_message("cli", "where am I?")
    folders = {
        ("agents", "alpha"): "inbox/.processed",
        ("pipes", "p~alpha→beta"): "inbox/.processed",
        ("agents", "waiting"): "inbox",
        ("agents", "half"): "outbox",
        ("agents", "Bad_Name"): "inbox/.processed",
        ("agents", "x..y"): "inbox/.processed",
        ("pipes", "p~nope"): "inbox/.processed",
    }
    for (kind, name), sub in folders.items():
        write_message(_folder(home, kind, name, sub), msg)
        log = _folder(home, kind, name, "logs") / "2020-01-01.ndjson"
        log.write_text('{"level":"info","msg":"old"}\n')
        os.utime(log, (OLD, OLD))
    for kind, name in [("agents", "alpha"), ("pipes", "p~alpha→beta")]:
        (home / kind / name / "status").write_text("stopped\n")
    for kind, name in [("agents", "Bad_Name"), ("agents", "x..y"), ("pipes", "p~nope")]:
        (home / kind / name / "status").write_text("idle\n")
    (home / "agents" / "ghost").write_text("a file, not an agent\n")
    definition = _folder(home, "pipes", "triage", ".")
    (definition / "config.json").write_text('{"name": "triage", "operators": []}\n')
    return msg.filename


def _ok(*args: str) -> str:
    done = run_loom(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ps_stats_gc_and_trace_see_the_same_processes(loom_home: Path) -> None:
    filename = _odd_home(loom_home)

    ps = {row["name"] for row in json.loads(_ok("agent", "ps", "--all", "--json"))}
    stats = {p["name"] for p in json.loads(_ok("stats", "--json"))["processes"]}
    gc_lines = _ok("gc", "--dry-run").splitlines()
    gc = {m.group(1) for line in gc_lines if (m := re.search(r"(?:agents|pipes)/([^/]+)/", line))}
    doc = json.loads(_ok("trace", filename, "--json"))
    traced = {s["process"] for m in doc["messages"] for s in m["status"]}

    assert ps == STARTED  # ps lists what was started: a status says what it does
    assert stats == gc == traced == STARTED | UNSTARTED
