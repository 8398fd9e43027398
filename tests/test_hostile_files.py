"""Something else in place of a file loom keeps itself (a FIFO, a link to /dev/zero, a
directory) never hangs or crash-loops a process or a command: the bad entry is passed
over, or the process stops once with one line saying which file (docs/operations.md)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import crash_records, run_loom, wait_for
from home_kit import stop_all  # noqa: F401

from loom.errors import NeedsOperator
from loom.pipeline.definition import parse_definition
from loom.pipeline.state import StateStore
from loom.store.home import pid_is_loom
from loom.store.message import new_message
from loom.store.queue import MessageTooLarge, Queue


def msgs(folder: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.endswith(".msg"))
    except FileNotFoundError:
        return []


def today_log(home: Path, name: str) -> Path:
    return home / "agents" / name / "logs" / f"{datetime.now(UTC):%Y-%m-%d}.ndjson"


def put_fifo(path: Path) -> None:
    """Replace `path` by a FIFO nobody writes to: a blocking open of it never returns."""
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def stopped_agent(home: Path, name: str = "c") -> None:
    """An agent that ran once through `--stdin` and is stopped: its files all exist."""
    r = run_loom("agent", "start", name, "--model", "echo", "--stdin", input="hi\n")
    assert r.returncode == 0, r.stderr


def supervisor_pid(home: Path) -> int:
    return int((home / "supervisor.pid").read_text())


@pytest.mark.usefixtures("stop_all")
def test_fifos_in_a_process_folder_do_not_stop_the_supervisor(loom_home: Path) -> None:
    stopped_agent(loom_home)
    for name in ("a", "b"):
        assert run_loom("agent", "start", name, "--model", "echo", "-d").returncode == 0
    assert run_loom("route", "a", "--to", "b").returncode == 0
    run_loom("send", "a", "first")
    wait_for(lambda: msgs(loom_home / "agents/b/outbox"), what="the first message at b")
    # The supervisor reads every process's mode (its scan) and logs (its metrics). A
    # status that is no file hides the process from both, so it stays a file here.
    put_fifo(loom_home / "agents/c/mode")
    put_fifo(today_log(loom_home, "c"))
    supervisor = supervisor_pid(loom_home)
    os.kill(supervisor, signal.SIGHUP)  # rescan now, before the next message
    run_loom("send", "a", "second")
    wait_for(lambda: len(msgs(loom_home / "agents/b/outbox")) == 2, what="the second at b")
    os.kill(supervisor, signal.SIGTERM)
    wait_for(lambda: not pid_is_loom(supervisor), what="the supervisor to stop on SIGTERM")


def test_fifos_where_the_supervisor_reads_after_a_crash_do_not_stop_it(loom_home: Path) -> None:
    # A crash makes the supervisor read the child's stderr.log (for last_error) and its
    # crash records (for the failures of the last hour).
    for name in ("a", "b"):
        assert run_loom("agent", "start", name, "--model", "echo", "-d").returncode == 0
    assert run_loom("route", "a", "--to", "b").returncode == 0
    put_fifo(loom_home / "agents/a/stderr.log")
    os.mkfifo(loom_home / "agents/a/crashes/1700000000000-01HOSTILE00000000000000000.json")
    runner = int((loom_home / "agents/a/pid").read_text())
    os.kill(runner, signal.SIGKILL)
    wait_for(
        lambda: (loom_home / "agents/a/pid").read_text().strip() not in ("", str(runner)),
        what="a restarted runner",
    )
    run_loom("send", "a", "after the crash")
    wait_for(lambda: msgs(loom_home / "agents/b/outbox"), what="the message at b")
    supervisor = supervisor_pid(loom_home)
    os.kill(supervisor, signal.SIGTERM)
    wait_for(lambda: not pid_is_loom(supervisor), what="the supervisor to stop on SIGTERM")


def bad_status(kind: str, path: Path) -> None:
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
@pytest.mark.parametrize("field", ["status", "pid", "model", "restarts"])
def test_ps_and_stats_pass_over_a_bad_file_in_a_process_folder(
    loom_home: Path, kind: str, field: str
) -> None:
    stopped_agent(loom_home, "c")
    stopped_agent(loom_home, "d")
    bad_status(kind, loom_home / "agents/c" / field)
    ps = run_loom("agent", "ps", "--all", "--json", timeout=10)
    assert ps.returncode == 0 and "Traceback" not in ps.stderr, ps.stderr
    assert "d" in [row["name"] for row in json.loads(ps.stdout)]
    stats = run_loom("stats", "--json", timeout=10)
    assert stats.returncode == 0 and "Traceback" not in stats.stderr, stats.stderr
    assert "d" in [p["name"] for p in json.loads(stats.stdout)["processes"]]
    stop = run_loom("agent", "stop", "c", timeout=10)
    assert "Traceback" not in stop.stderr, stop.stderr


def test_a_fifo_as_a_log_file_does_not_hang_agent_logs_or_stats(loom_home: Path) -> None:
    stopped_agent(loom_home, "c")
    older = today_log(loom_home, "c").with_name("2020-01-01.ndjson")
    os.mkfifo(older)
    logs = run_loom("agent", "logs", "c", timeout=10)
    assert logs.returncode == 0, logs.stderr
    assert "replied" in logs.stdout  # today's lines are still shown
    put_fifo(today_log(loom_home, "c"))
    assert run_loom("agent", "logs", "c", timeout=10).returncode == 0
    assert run_loom("stats", timeout=10).returncode == 0


def test_a_fifo_as_the_routes_file_is_one_error_line(loom_home: Path) -> None:
    (loom_home / "router").mkdir(parents=True, exist_ok=True)
    routes = loom_home / "routes.json"
    os.mkfifo(routes)
    r = run_loom("routes", timeout=10)
    assert r.returncode != 0
    [line] = r.stderr.splitlines()
    assert "routes.json" in line and "FIFO" in line


def test_a_fifo_as_the_router_stats_still_lists_the_routes(loom_home: Path) -> None:
    for name in ("a", "b"):
        stopped_agent(loom_home, name)
    assert run_loom("route", "a", "--to", "b").returncode == 0
    (loom_home / "router").mkdir(parents=True, exist_ok=True)
    os.mkfifo(loom_home / "router/stats.json")
    r = run_loom("routes", "--json", timeout=10)
    assert r.returncode == 0, r.stderr
    assert [(row["from"], row["to"]) for row in json.loads(r.stdout)] == [("a", "b")]


def pipe_weave(work: Path) -> None:
    (work / "loom.yml").write_text(
        "version: 1\npipes:\n  tidy:\n    from: [a]\n    operators:\n"
        "      - dedupe: {key: body}\nagents:\n  - {name: a, model: echo}\n"
    )


def fifo_at(path: Path) -> None:
    os.mkfifo(path)


def dev_zero_at(path: Path) -> None:
    path.symlink_to("/dev/zero")


def directory_at(path: Path) -> None:
    path.mkdir()


BAD_STATE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "fifo-journal": ("journal.ndjson", fifo_at),
    "dev-zero-state": ("state.json", dev_zero_at),
    "directory-state": ("state.json", directory_at),
}


@pytest.mark.usefixtures("stop_all")
@pytest.mark.parametrize("case", sorted(BAD_STATE))
def test_a_pipe_stops_once_on_a_state_file_it_cannot_read(
    tmp_path: Path, loom_home: Path, case: str
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    pipe_weave(work)
    filename, make = BAD_STATE[case]
    state = loom_home / "pipes/tidy/state/1-dedupe"
    state.mkdir(parents=True)
    make(state / filename)
    r = run_loom("up", "-d", cwd=work, env={"LOOM_RESTART_BASE": "0.02"}, timeout=30)
    assert r.returncode == 0, r.stderr
    pipe = loom_home / "pipes/tidy"
    wait_for(lambda: crash_records(pipe), 20, what="the stop record")
    # Time for a crash loop to show: another agent started and answered meanwhile.
    assert run_loom("agent", "start", "b", "--model", "echo", "-d").returncode == 0
    run_loom("send", "b", "ping")
    wait_for(lambda: msgs(loom_home / "agents/b/outbox"), what="b's reply")
    [record] = crash_records(pipe)
    assert record["error_type"] == "needs_operator" and record["exitCode"] == 78
    assert str(state / filename) in record["last_error"]
    assert "move it away" in record["last_error"]
    assert (pipe / "status").read_text().strip() == "error"
    run_loom("down", cwd=work)


def dedupe_spec() -> object:
    return parse_definition("- dedupe: {key: body}\n", name="t").operators[0]


def test_a_garbled_journal_line_is_skipped_like_a_torn_one(tmp_path: Path) -> None:
    spec = dedupe_spec()
    folder = tmp_path / "state" / "1-dedupe"
    folder.mkdir(parents=True)
    good = json.dumps({"seq": 1, "delta": ["k"], "applied": None})
    (folder / "journal.ndjson").write_bytes(good.encode() + b"\n\xff\n")
    saved = StateStore(tmp_path / "state").load(spec)  # type: ignore[arg-type]
    assert saved is not None and saved.deltas == [["k"]] and saved.seq == 1


@pytest.mark.parametrize("case", sorted(BAD_STATE))
def test_an_unreadable_state_file_needs_the_operator(tmp_path: Path, case: str) -> None:
    filename, make = BAD_STATE[case]
    folder = tmp_path / "state" / "1-dedupe"
    folder.mkdir(parents=True)
    make(folder / filename)
    with pytest.raises(NeedsOperator, match="move it away"):
        StateStore(tmp_path / "state").load(dedupe_spec())  # type: ignore[arg-type]


def test_a_body_that_escapes_past_the_message_limit_is_refused(
    tmp_path: Path, loom_home: Path
) -> None:
    # 12 MB of control characters: within the 32 MiB input limit, 72 MB as JSON.
    body = tmp_path / "c12"
    body.write_bytes(b"\x01" * 12_000_000)
    r = run_loom("send", "x", "--create", "--file", str(body))
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert "64 MiB" in line and "Traceback" not in r.stderr
    assert msgs(loom_home / "agents/x/inbox") == []


def test_a_reply_past_the_message_limit_is_not_written(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "inbox", tmp_path / "outbox")
    (tmp_path / "outbox").mkdir()
    with pytest.raises(MessageTooLarge):
        queue.emit(new_message("a", "\x01" * 12_000_000))
    assert os.listdir(tmp_path / "outbox") == []


def test_deeply_nested_json_on_stdin_is_sent_as_text(loom_home: Path) -> None:
    deep = '{"a":' * 200000 + "1" + "}" * 200000
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input=deep)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-500:]
    [reply] = msgs(loom_home / "agents/a/outbox")
    assert json.loads((loom_home / "agents/a/outbox" / reply).read_text())["body"] == deep


def test_deeply_nested_json_into_pipe_run_is_a_line_of_text(tmp_path: Path) -> None:
    # It has the keys an envelope starts with, so the line is probed as one.
    deep = '{"v": 1, "from": "x", "a": ' + "[" * 200000 + "]" * 200000 + "}"
    definition = tmp_path / "p.yml"
    definition.write_text("name: p\noperators:\n  - map: length(@)\n")
    r = run_loom("pipe", "run", str(definition), input=deep + "\n")
    assert "RecursionError" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-500:]


@pytest.mark.usefixtures("stop_all")
def test_stopping_an_idle_agent_does_not_wait_for_its_rescan(loom_home: Path) -> None:
    env = {"LOOM_WORKER_RESCAN": "600"}
    assert run_loom("agent", "start", "a", "--model", "echo", "-d", env=env).returncode == 0
    wait_for(lambda: (loom_home / "agents/a/status").read_text().strip() == "idle")
    # Before its next rescan (10 minutes away): the stop signal ends the wait itself.
    stop = run_loom("agent", "stop", "a", timeout=8)
    assert stop.returncode == 0, stop.stderr
    assert (loom_home / "agents/a/status").read_text().strip() == "stopped"


DEEP = "[" * 100_000 + "]" * 100_000  # past the JSON decoder's recursion limit


@pytest.mark.usefixtures("stop_all")
def test_deeply_nested_json_in_the_files_loom_keeps_is_a_damaged_file_not_a_crash(
    loom_home: Path,
) -> None:
    stopped_agent(loom_home, "c")
    (loom_home / "supervisor.json").write_text(DEEP)
    (loom_home / "routes.json").write_text(DEEP)
    crashes = loom_home / "agents/c/crashes"
    crashes.mkdir(exist_ok=True)
    (crashes / "1-x.json").write_text(DEEP)
    # The supervisor record: read as absent.
    r = run_loom("supervisor", "status")
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    # The routes file: one error line naming it.
    r = run_loom("routes")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert "routes.json" in line
    # A crash record: ps and a detached start pass over it.
    (loom_home / "routes.json").unlink()
    r = run_loom("agent", "ps")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = run_loom("agent", "start", "c", "--model", "echo", "-d")
    assert r.returncode == 0, r.stderr
    assert run_loom("send", "c", "still answers", "--wait", "--timeout", "20s").stdout == (
        "still answers\n"
    )


def test_a_pid_file_with_a_number_past_any_pid_is_read_as_no_process(loom_home: Path) -> None:
    loom_home.mkdir(parents=True, exist_ok=True)
    (loom_home / "supervisor.pid").write_text("99999999999999999999999\n")
    r = run_loom("supervisor", "status")
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr


def test_a_pipe_definition_nested_too_deeply_is_one_located_problem(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    r = run_loom("validate", str(deep))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "nested too deeply" in r.stderr
    r = run_loom("pipe", "run", str(deep), input="x\n")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
