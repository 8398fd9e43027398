"""`loom agent logs` (levels, --json, --follow over midnight) and what every log line holds."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import run_loom, spawn_loom, wait_for
from home_kit import stop_all  # noqa: F401

from loom.store.home import ProcessDir
from loom.store.logs import Log


def noisy_agent(home: Path) -> Log:
    proc = ProcessDir(home, "agents", "a").create()
    proc.set_status("idle")
    log = Log(proc.logs, "a")
    log.event("polled", "debug")
    log.info("claimed", msg="1-A.msg")
    log.warning("retrying", msg="1-A.msg", attempt=1)
    log.error("failed", msg="1-A.msg", error="timeout")
    log.info("serving")
    return log


def test_level_keeps_that_level_and_above(loom_home: Path) -> None:
    noisy_agent(loom_home)
    done = run_loom("agent", "logs", "a", "--level", "warning", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["event"] for line in done.stdout.splitlines()] == [
        "retrying",
        "failed",
    ]
    readable = run_loom("agent", "logs", "a", "--level", "error").stdout.splitlines()
    assert len(readable) == 1 and " error   failed msg=1-A.msg error=timeout" in readable[0]
    everything = run_loom("agent", "logs", "a", "-n", "3").stdout.splitlines()
    assert [line.split()[2] for line in everything] == ["retrying", "failed", "serving"]
    bad = run_loom("agent", "logs", "a", "--level", "loud")
    assert bad.returncode == 2 and "unknown level 'loud'" in bad.stderr


def reader(proc: subprocess.Popen[bytes]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_follow_carries_on_into_the_next_days_file(
    loom_home: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    log = noisy_agent(loom_home)
    follower = spawn_loom("agent", "logs", "a", "-f", "-n", "1", "--json", "--level", "info")
    reap.append(follower)
    lines = reader(follower)
    assert json.loads(lines.get(timeout=10))["event"] == "serving"
    log.info("replied", msg="2-B.msg")
    assert json.loads(lines.get(timeout=10))["event"] == "replied"
    # Midnight: the next line goes to tomorrow's file.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    nxt = loom_home / "agents" / "a" / "logs" / f"{tomorrow}.ndjson"
    debug = {"ts": "t", "level": "debug", "event": "noise"}
    after = {"ts": "t", "level": "info", "event": "after midnight", "msg": "3-C.msg"}
    nxt.write_text(json.dumps(debug) + "\n" + json.dumps(after) + "\n")
    assert json.loads(lines.get(timeout=10))["event"] == "after midnight"
    assert follower.poll() is None


def test_follow_reads_a_replaced_day_file_from_its_start(
    loom_home: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    log = noisy_agent(loom_home)
    follower = spawn_loom("agent", "logs", "a", "-f", "-n", "1", "--json")
    reap.append(follower)
    lines = reader(follower)
    assert json.loads(lines.get(timeout=10))["event"] == "serving"
    # The day file is replaced by a shorter one (restored from a backup, say): its
    # lines are new to the reader and are shown, not skipped as already read.
    today = log.dir / f"{datetime.now(UTC).strftime('%Y-%m-%d')}.ndjson"
    fresh = today.with_name("fresh.tmp")
    fresh.write_text(json.dumps({"ts": "t", "level": "info", "event": "restored"}) + "\n")
    fresh.replace(today)
    assert json.loads(lines.get(timeout=10))["event"] == "restored"
    assert follower.poll() is None


@pytest.mark.usefixtures("stop_all")
def test_every_process_logs_ts_level_event_and_the_message(loom_home: Path) -> None:
    for name in ("a", "b"):
        assert run_loom("agent", "start", name, "--model", "echo", "-d").returncode == 0
    assert run_loom("pipe", "create", "same", input='- map: "@"\n').returncode == 0
    assert run_loom("route", "a", "--pipe", "same", "--to", "b").returncode == 0
    assert run_loom("send", "a", "hello").returncode == 0
    outbox = loom_home / "agents" / "b" / "outbox"
    wait_for(lambda: list(outbox.glob("*.msg")), 20, "b's answer")
    [sent] = [p.name for p in (loom_home / "agents" / "a" / "inbox" / ".processed").iterdir()]
    [reply] = [p.name for p in (loom_home / "agents" / "a" / "outbox").iterdir()]
    mentions: dict[str, set[str]] = {sent: set(), reply: set()}
    for path in sorted(loom_home.glob("**/logs/*.ndjson")):
        process = str(path.parent.parent.relative_to(loom_home))
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert {"ts", "level", "event"} <= record.keys(), (path, record)
            for name in mentions:
                if name in line:
                    mentions[name].add(process)
    # grep FILENAME finds each message in every process that handled it.
    assert mentions[sent] == {"agents/a"}
    assert mentions[reply] == {"agents/a", "pipes/same~a→b", "router"}
