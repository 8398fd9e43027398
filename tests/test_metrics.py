"""metrics.prom and `loom stats`: counters from the logs, queue depths, route counters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_loom, wait_for
from home_kit import folder, stop_all  # noqa: F401

from loom.ops.gc import sweep as gc
from loom.ops.gc.retention import Retention
from loom.store.home import ProcessDir
from loom.store.logs import Log
from loom.supervisor import metrics

SAMPLE = re.compile(r'[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+')


def agent(home: Path, name: str) -> Log:
    proc = ProcessDir(home, "agents", name).create()
    proc.set_status("idle")
    return Log(proc.logs, name)


def test_counters_are_read_incrementally_and_survive_restarts_and_gc(loom_home: Path) -> None:
    log = agent(loom_home, "a")
    log.info("claimed", msg="1-A.msg")
    log.info("replied", msg="1-A.msg", duration_ms=100)
    log.info("claimed", msg="2-B.msg")
    log.error("failed", msg="2-B.msg", error="timeout")
    first = metrics.Collector.load(loom_home)
    [a] = first.collect()
    assert (a.counts["received"], a.counts["processed"], a.counts["failed"]) == (2, 1, 1)
    assert (a.seconds_sum, a.seconds_count) == (0.1, 1)
    first.save()
    log.info("claimed", msg="3-C.msg")
    log.info("replied", msg="3-C.msg", duration_ms=300)
    # A new collector (a restarted supervisor) starts where the saved state ended.
    second = metrics.Collector.load(loom_home)
    [a] = second.collect()
    assert (a.counts["received"], a.counts["processed"], a.seconds_count) == (3, 2, 2)
    assert a.seconds_sum == pytest.approx(0.4)
    second.save()
    # gc compressing an old day, already counted, does not count it again.
    old = loom_home / "agents" / "a" / "logs" / "2020-01-01.ndjson"
    old.write_text('{"ts": "x", "level": "info", "event": "claimed", "msg": "0-Z.msg"}\n')
    third = metrics.Collector.load(loom_home)
    [a] = third.collect()
    assert a.counts["received"] == 4
    third.save()
    gc.run(loom_home, Retention(logs_compress=0, logs_delete=10**10))
    assert (old.parent / "2020-01-01.ndjson.gz").exists() and not old.exists()
    [a] = metrics.Collector.load(loom_home).collect()
    assert a.counts["received"] == 4


def test_failure_replies_the_supervisor_wrote_count_for_the_dead_process(
    loom_home: Path,
) -> None:
    log = agent(loom_home, "a")
    log.info("claimed", msg="1-A.msg")
    supervisor = Log(loom_home / "supervisor" / "logs", "supervisor")
    supervisor.error("failed", msg="1-A.msg", child="agents/a", error_type="dead")
    supervisor.error("dead", child="agents/a", failed_messages=1)
    [a] = metrics.Collector.load(loom_home).collect()
    assert (a.counts["received"], a.counts["failed"]) == (1, 1)


def test_metrics_prom_is_prometheus_text(loom_home: Path) -> None:
    log = agent(loom_home, "a")
    log.info("claimed", msg="1-A.msg")
    log.info("replied", msg="1-A.msg", duration_ms=1500)
    folder(loom_home, "a", "pending").joinpath("2-B.msg").write_text("{}")
    route = {"from": "a", "pipe": None, "to": "b", "forwarded": 7, "held": True, "pending": 3}
    processes = metrics.Collector.load(loom_home).collect()
    text = metrics.render(processes, [route], 1700000000.0)
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.fullmatch(line), line
    assert 'loom_messages_processed_total{process="a",kind="agent"} 1' in text
    assert 'loom_processing_seconds_sum{process="a",kind="agent"} 1.5' in text
    assert 'loom_queue_messages{process="a",kind="agent",queue="pending"} 1' in text
    assert 'loom_route_forwarded_total{from="a",pipe="",to="b"} 7' in text
    assert 'loom_route_held{from="a",pipe="",to="b"} 1' in text
    assert "# TYPE loom_processing_seconds summary" in text
    escaped = metrics.render([], [{"from": 'p~a→b"x', "to": "c\\d"}], 0)
    assert 'from="p~a→b\\"x"' in escaped and 'to="c\\\\d"' in escaped


def test_loom_stats_works_without_a_supervisor(loom_home: Path) -> None:
    for text in ("one", "two"):
        done = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input=text)
        assert done.returncode == 0, done.stderr
    doc = json.loads(run_loom("stats", "--json").stdout)
    [a] = doc["processes"]
    assert (a["name"], a["kind"], a["received"], a["processed"], a["failed"]) == (
        "a",
        "agent",
        2,
        2,
        0,
    )
    assert a["queue"] == {"pending": 0, "in_progress": 0, "failed": 0, "unreadable": 0}
    assert a["processing_seconds_count"] == 2
    header, row = run_loom("stats").stdout.splitlines()
    assert header.split()[:5] == ["NAME", "KIND", "STATUS", "RECEIVED", "PROCESSED"]
    assert row.split()[:5] == ["a", "agent", "stopped", "2", "2"]
    assert not (loom_home / "metrics.state.json").exists()  # stats only reads


@pytest.mark.usefixtures("stop_all")
def test_the_supervisor_keeps_metrics_prom_up_to_date(loom_home: Path) -> None:
    assert run_loom("agent", "start", "a", "--model", "echo", "-d").returncode == 0
    prom = loom_home / "metrics.prom"
    wait_for(prom.exists, 10, "the first metrics.prom")
    assert run_loom("send", "a", "hello").returncode == 0
    lines = [
        'loom_messages_processed_total{process="a",kind="agent"} 1',
        'loom_process_up{process="a",kind="agent"} 1',
    ]
    wait_for(lambda: all(x in prom.read_text() for x in lines), 15, "a's numbers in metrics.prom")
    [a] = json.loads(run_loom("stats", "--json").stdout)["processes"]
    assert a["processed"] == 1 and a["up"] is True
