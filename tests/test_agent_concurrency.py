"""An agent with several model calls in flight, its rate limit and the shared back-off
after a 429: through the real CLI and supervisor, against the fake LLM server."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_loom, wait_for
from home_kit import stop_all  # noqa: F401
from llm_server import LLMServer, Slow, Status

from loom.api import send
from loom.store.queue import list_messages, read_message

pytestmark = pytest.mark.usefixtures("stop_all")


def agent_dir(home: Path, name: str = "a") -> Path:
    return home / "agents" / name


def start(server: LLMServer, *extra: str, name: str = "a") -> None:
    r = run_loom("agent", "start", name, "--model", "ollama/m", "-d", *extra, env=server.env())
    assert r.returncode == 0, r.stderr


def send_many(count: int, name: str = "a") -> list[str]:
    # Some tests queue the messages before the agent starts.
    return [send(name, f"question {i}", create=True).name for i in range(count)]


def replies_by_parent(home: Path, name: str = "a") -> Counter[str]:
    """How many replies each message got, by its file name (the end of the reply's origin)."""
    outbox = agent_dir(home, name) / "outbox"
    parents = [
        (read_message(outbox / f).origin or "").rsplit("/", 1)[-1] for f in list_messages(outbox)
    ]
    return Counter(parents)


def settled(home: Path, sent: list[str], name: str = "a") -> bool:
    """Every message answered, none pending or claimed any more."""
    inbox = agent_dir(home, name) / "inbox"
    return (
        set(replies_by_parent(home, name)) == set(sent)
        and not list_messages(inbox)
        and not list_messages(inbox / ".in-progress")
    )


def log_events(home: Path, name: str = "a") -> list[dict[str, object]]:
    records = []
    for path in sorted((agent_dir(home, name) / "logs").glob("*.ndjson")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def events(home: Path, event: str, name: str = "a") -> list[dict[str, object]]:
    return [r for r in log_events(home, name) if r.get("event") == event]


def ps(name: str = "a") -> dict[str, object]:
    r = run_loom("agent", "ps", "--json")
    assert r.returncode == 0, r.stderr
    return next(row for row in json.loads(r.stdout) if row["name"] == name)


def runner_pid(home: Path) -> int:
    raw = (agent_dir(home) / "pid").read_text().strip()
    return int(raw) if raw.isdigit() else 0


def test_four_calls_in_flight_answer_eight_messages_once_each(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(*[Slow(1.0, f"answer {i}") for i in range(8)])
    start(server, "--concurrency", "4")
    sent = send_many(8)
    wait_for(lambda: server.open_now == 4, timeout=15, what="four calls open at the server")
    row = ps()
    assert (row["in_flight"], row["concurrency"]) == (4, 4)
    table = run_loom("agent", "ps").stdout
    assert "IN FLIGHT" in table.splitlines()[0] and " 4/4 " in table
    wait_for(lambda: settled(loom_home, sent), timeout=20, what="all eight answered")
    assert server.max_open == 4
    assert len(server.requests) == 8
    assert replies_by_parent(loom_home) == Counter({name: 1 for name in sent})
    outbox = agent_dir(loom_home) / "outbox"
    bodies = sorted(read_message(outbox / f).body for f in list_messages(outbox))
    assert bodies == sorted(f"answer {i}" for i in range(8))
    # One whole record per turn, each answer's two turns together.
    lines = [
        json.loads(line)
        for path in (agent_dir(loom_home) / "conversations").glob("*.ndjson")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == 16
    for first, second in zip(lines[::2], lines[1::2], strict=True):
        assert (first["role"], second["role"]) == ("user", "assistant")
        assert first["msg"] == second["msg"]
    assert sorted(line["msg"] for line in lines[::2]) == sorted(sent)


def test_concurrency_one_answers_in_order(server: LLMServer, loom_home: Path) -> None:
    sent = send_many(5)
    start(server)
    wait_for(lambda: settled(loom_home, sent), timeout=15, what="all answered")
    assert server.max_open == 1
    asked = [r.body["messages"][-1]["content"] for r in server.requests]
    assert asked == [f"question {i}" for i in range(5)]


def test_sigkill_with_calls_in_flight_answers_every_message_exactly_once(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(*[Slow(5.0) for _ in range(4)])
    start(server, "--concurrency", "4")
    sent = send_many(8)
    wait_for(lambda: server.open_now == 4, timeout=15, what="four calls open")
    first = runner_pid(loom_home)
    os.kill(first, signal.SIGKILL)
    # The supervisor restarts it; recovery puts the four stranded claims back.
    wait_for(lambda: runner_pid(loom_home) not in (0, first), timeout=15, what="a new runner")
    wait_for(lambda: settled(loom_home, sent), timeout=30, what="all eight answered")
    assert replies_by_parent(loom_home) == Counter({name: 1 for name in sent})
    requeued = [r for r in events(loom_home, "recovered") if r.get("action") == "requeued"]
    assert len(requeued) == 4


def test_sigterm_puts_back_every_claim_in_flight_within_the_stop_timeout(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(*[Slow(60.0) for _ in range(4)])
    start(server, "--concurrency", "4")
    sent = send_many(4)
    wait_for(lambda: server.open_now == 4, timeout=15, what="four calls open")
    began = time.monotonic()
    r = run_loom("agent", "stop", "a")
    took = time.monotonic() - began
    assert r.returncode == 0, r.stderr
    assert took < 10
    inbox = agent_dir(loom_home) / "inbox"
    assert sorted(list_messages(inbox)) == sorted(sent)
    assert list_messages(inbox / ".in-progress") == []
    assert list_messages(agent_dir(loom_home) / "outbox") == []
    assert len(events(loom_home, "put back")) == 4
    # Started again, it answers each of them once.
    start(server, "--concurrency", "4")
    wait_for(lambda: settled(loom_home, sent), timeout=20, what="all answered after restart")
    assert replies_by_parent(loom_home) == Counter({name: 1 for name in sent})


def test_rate_spaces_calls_at_the_server(server: LLMServer, loom_home: Path) -> None:
    sent = send_many(20)
    start(server, "--concurrency", "4", "--rate", "10/s")
    wait_for(lambda: settled(loom_home, sent), timeout=30, what="all twenty answered")
    times = sorted(r.at for r in server.requests)
    assert len(times) == 20
    span = times[-1] - times[0]
    # 19 gaps of 0.1 s.
    assert 1.9 * 0.9 <= span <= 1.9 * 1.1, span


def test_a_429_holds_the_agents_new_calls_until_retry_after(
    server: LLMServer, loom_home: Path
) -> None:
    # Of the first four calls, two are refused (after all four are open) and two end
    # later, freeing their slots while the back-off lasts: the next messages' calls
    # must wait for it too, not only the refused calls' retries.
    server.script(
        *[Status(429, retry_after=3, pause=0.3) for _ in range(2)],
        *[Slow(0.8) for _ in range(2)],
    )
    sent = send_many(8)
    start(server, "--concurrency", "4")
    row = wait_for(lambda: (r := ps()) and r["throttled_until"] and r, timeout=10, what="throttled")
    assert row["status"] in ("running", "idle")
    assert "throttled until" in run_loom("agent", "ps").stdout
    wait_for(lambda: settled(loom_home, sent), timeout=30, what="all eight answered")
    times = sorted(r.at for r in server.requests)
    assert len(times) == 10  # eight answers, and two calls refused first
    first = times[0]
    assert all(t - first < 0.3 for t in times[:4]), times
    # Nothing new reached the server until the Retry-After had passed.
    assert times[4] - first >= 3.0, times
    throttled = events(loom_home, "throttled")
    assert len(throttled) == 1 and throttled[0]["until"]
    assert replies_by_parent(loom_home) == Counter({name: 1 for name in sent})
    assert ps()["throttled_until"] is None


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--concurrency", "0"], "concurrency must be from 1 to 256, got 0"),
        (["--concurrency", "257"], "concurrency must be from 1 to 256, got 257"),
        (["--rate", "10/x"], "rate must look like 60/m"),
        (["--rate", "0/s"], "rate must look like 60/m"),
        (["--rate", "fast"], "rate must look like 60/m"),
    ],
)
def test_bad_concurrency_or_rate_is_one_clear_error(
    args: list[str], problem: str, loom_home: Path
) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "-d", *args)
    assert r.returncode == 2
    assert problem in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not agent_dir(loom_home).exists()


def test_concurrency_needs_detach(loom_home: Path) -> None:
    r = run_loom("agent", "start", "a", "--model", "echo", "--concurrency", "2", input="hi")
    assert r.returncode == 2
    assert "--concurrency needs --detach" in r.stderr


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("concurrency: 0", "concurrency must be from 1 to 256, got 0"),
        ('concurrency: "4"', "concurrency must be a whole number from 1 to 256, got '4'"),
        ("concurrency: 2.5", "concurrency must be a whole number"),
        ("rate: fast", "rate must look like 60/m"),
        ("rate: 60", "`rate` must be a string, got the number 60"),
    ],
)
def test_bad_concurrency_or_rate_in_loom_yml(setting: str, problem: str, tmp_path: Path) -> None:
    config = tmp_path / "loom.yml"
    config.write_text(f"version: 1\nagents:\n  - name: a\n    model: echo\n    {setting}\n")
    r = run_loom("validate", "--config", str(config))
    assert r.returncode != 0
    assert "loom.yml:5:" in r.stderr and problem in r.stderr, r.stderr


def test_concurrency_and_rate_in_loom_yml_are_stored_and_restart_on_change(
    tmp_path: Path, loom_home: Path
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    weave = (
        "version: 1\nagents:\n  - name: a\n    model: echo\n    concurrency: {n}\n    rate: 5/s\n"
    )
    (work / "loom.yml").write_text(weave.format(n=3))
    try:
        assert run_loom("up", "-d", cwd=work).returncode == 0
        assert (agent_dir(loom_home) / "concurrency").read_text().strip() == "3"
        assert (agent_dir(loom_home) / "rate").read_text().strip() == "5/s"
        wait_for(lambda: ps()["status"] == "idle", what="idle")
        assert ps()["concurrency"] == 3
        first = runner_pid(loom_home)
        (work / "loom.yml").write_text(weave.format(n=5))
        up = run_loom("up", "-d", cwd=work)
        assert up.returncode == 0, up.stderr
        wait_for(lambda: runner_pid(loom_home) not in (0, first), what="restarted")
        assert ps()["concurrency"] == 5
    finally:
        run_loom("down", cwd=work)


def test_status_stays_running_through_a_backlog_with_calls_in_flight(
    server: LLMServer, loom_home: Path
) -> None:
    # An instant model: the calls in flight often all end before the next claim. The
    # first answer takes a moment, so the drain is seen under way.
    server.script(Slow(0.3))
    sent = send_many(600)
    start(server, "--concurrency", "2")
    folder = agent_dir(loom_home)
    inbox = folder / "inbox"
    seen_running = False
    idle_with_work: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while not settled(loom_home, sent):
        assert time.monotonic() < deadline, "the backlog was not answered in time"
        status = (folder / "status").read_text().strip()
        seen_running = seen_running or status == "running"
        if seen_running and status == "idle":
            waiting = (len(list_messages(inbox)), len(list_messages(inbox / ".in-progress")))
            if waiting != (0, 0):
                idle_with_work.append(waiting)
    assert seen_running, "the drain ended before its status was seen"
    assert idle_with_work == [], f"idle while messages waited (pending, claimed): {idle_with_work}"
    wait_for(lambda: (folder / "status").read_text().strip() == "idle", what="idle at the end")
    assert set(replies_by_parent(loom_home)) == set(sent)
