"""The queued pipe process: steps on disk, exactly-once results, failures, restarts (SPEC 6)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from loom.pipeline import Pipeline, parse_definition, save_definition
from loom.pipeline.journal import Journal
from loom.pipeline.operators import REGISTRY, Args, Operator, register
from loom.pipeline.process import PipeProcess
from loom.store import home as homes
from loom.store.home import ProcessDir
from loom.store.logs import Log
from loom.store.message import Message, new_message
from loom.store.queue import Queue, list_messages, read_message
from loom.store.worker import Worker


class Crash(BaseException):
    """Stands for the process dying at this instant (nothing catches it)."""


@pytest.fixture(autouse=True)
def crash_operator(tmp_path: Path) -> Iterator[Path]:
    """`crash_once`: dies the first time it sees a message, passes it on afterwards."""
    marker = tmp_path / "crashed"

    @register
    class CrashOnce(Operator):
        kind = "crash_once"

        def configure(self, args: Args) -> None:
            pass

        def process(self, msg: Message, key: str, now: float) -> list[Message]:
            if not marker.exists():
                marker.touch()
                raise Crash()
            return [msg]

    yield marker
    del REGISTRY["crash_once"]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Instance:
    """A pipe instance folder and a (re)startable handler over it, in this process."""

    def __init__(self, home: Path, definition: str, name: str = "p") -> None:
        self.proc = ProcessDir(home, "pipes", name).create()
        self.queue = Queue(self.proc.inbox, self.proc.outbox)
        self.definition = parse_definition(definition, name=name)
        self.clock = Clock()
        self.start()

    def start(self) -> None:
        log = Log(self.proc.logs, self.proc.name)
        self.pipeline = Pipeline(
            self.definition,
            instance=self.proc.name,
            state_dir=self.proc.state,
            log=log,
            clock=self.clock,
        )
        self.handler = PipeProcess(self.proc, self.pipeline, log)
        self.worker = Worker(self.proc, self.queue, self.handler, log)

    def restart(self) -> None:
        """As a new process would: give up the queue, start again, recover."""
        self.pipeline.close()
        if self.worker.owner is not None:
            self.worker.owner.release()
        self.start()
        self.worker.recover()

    def send(self, body: str) -> Message:
        msg = new_message("cli", body)
        self.queue.send(msg)
        return msg

    def outbox(self) -> list[Message]:
        return [read_message(self.proc.outbox / n) for n in list_messages(self.proc.outbox)]

    def bodies(self) -> list[str]:
        return [m.body for m in self.outbox()]

    def folder(self, name: str) -> list[str]:
        return list_messages(self.proc.inbox / name)

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self.proc.logs.glob("*.ndjson")):
            records += [json.loads(line) for line in path.read_text().splitlines()]
        return records


def test_results_reach_the_outbox_through_steps_on_disk(loom_home: Path) -> None:
    inst = Instance(loom_home, "- map: '{n: n}'\n- split: '[n, n]'\n- map: \"join('', [@, '!'])\"")
    sent = inst.send('{"n": "x"}')
    inst.worker.drain()
    outs = inst.outbox()
    assert [m.body for m in outs] == ["x!", "x!"]
    assert all(m.origin == sent.filename and m.sender == "p" for m in outs)
    stem = sent.filename[:-4]
    steps = inst.proc.steps
    assert sorted(p.name for p in (steps / "1").iterdir()) == [f"{stem}.0.msg", f"{stem}.done"]
    assert sorted(p.name for p in (steps / "2").glob("*.msg")) == [
        f"{stem}.0.0.msg",
        f"{stem}.0.1.msg",
    ]
    assert read_message(steps / "2" / f"{stem}.0.1.msg").body == "x"
    # The last step holds the finished messages, byte for byte what the outbox got.
    finished = sorted((steps / "3").glob("*.msg"))
    assert sorted(read_message(p).filename for p in finished) == sorted(m.filename for m in outs)
    assert inst.folder(".processed") == [sent.filename]
    processed = [r for r in inst.log_records() if r["event"] == "processed"]
    assert processed[0]["msg"] == sent.filename


def test_dropped_messages_are_acknowledged_with_nothing_written_onward(loom_home: Path) -> None:
    inst = Instance(loom_home, "- filter: 'keep'")
    sent = inst.send('{"keep": false}')
    inst.worker.drain()
    assert inst.outbox() == []
    assert inst.folder(".processed") == [sent.filename]
    assert inst.pipeline.drops == {"1:filter": 1}


def test_an_operator_error_fails_the_message_and_the_pipe_goes_on(loom_home: Path) -> None:
    inst = Instance(loom_home, "- map: 'abs(n)'")
    bad = inst.send('{"n": "text"}')
    good = inst.send('{"n": -2}')
    inst.worker.drain()
    assert inst.folder(".failed") == [bad.filename]
    record = json.loads((inst.proc.inbox / ".failed" / f"{bad.filename}.error.json").read_text())
    assert record["error_type"] == "operator_error" and "abs()" in record["last_error"]
    failure, result = sorted(inst.outbox(), key=lambda m: m.error, reverse=True)
    assert failure.error and failure.origin == bad.filename
    assert "operator 1:map failed" in failure.body
    assert result.body == "2" and result.origin == good.filename
    assert inst.folder(".processed") == [good.filename]


def test_unreadable_messages_are_quarantined(loom_home: Path) -> None:
    inst = Instance(loom_home, "- map: '@'")
    (inst.proc.inbox / "1-OLD.msg").write_text("{not json")
    old = time.time() - 60
    os.utime(inst.proc.inbox / "1-OLD.msg", (old, old))
    (inst.proc.inbox / "2-YOUNG.msg").write_text('{"v": 1')
    inst.send("fine")
    inst.worker.drain()
    assert inst.folder(".unreadable") == ["1-OLD.msg"]
    assert inst.queue.pending() == ["2-YOUNG.msg"]  # may still be being written
    assert inst.bodies() == ["fine"]


def test_a_restart_resumes_from_the_last_completed_step(loom_home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    inst = Instance(
        loom_home, f"- command: 'echo run >> {counter}; cat'\n- crash_once: {{}}\n- map: '@'"
    )
    sent = inst.send("hello")
    with pytest.raises(Crash):
        inst.worker.drain()
    assert inst.folder(".in-progress") == [sent.filename]
    inst.restart()
    assert counter.read_text() == "run\n"  # step 1 was not run again
    assert inst.bodies() == ["hello"]
    assert inst.folder(".processed") == [sent.filename]
    inst.restart()
    assert inst.bodies() == ["hello"]


def test_a_crash_after_a_state_commit_does_not_turn_into_a_drop(loom_home: Path) -> None:
    inst = Instance(loom_home, "- dedupe: {key: id}\n- crash_once: {}")
    sent = inst.send('{"id": 7}')
    with pytest.raises(Crash):
        inst.worker.drain()
    # As if the process died after dedupe committed its key, before its manifest.
    (inst.proc.steps / "1" / f"{sent.filename[:-4]}.done").unlink()
    inst.restart()
    assert inst.bodies() == ['{"id": 7}']
    inst.send('{"id": 7}')
    inst.worker.drain()
    assert inst.bodies() == ['{"id": 7}']


def test_timeouts_run_in_the_queued_process(loom_home: Path) -> None:
    inst = Instance(loom_home, "- window: {size: 10, timeout: 30s}\n- map: '[*].body'")
    inst.send("a")
    last = inst.send("b")
    inst.worker.drain()
    assert inst.outbox() == [] and inst.handler.next_deadline() is not None
    inst.clock.now += 31
    inst.worker.drain()
    [out] = inst.outbox()
    assert out.body == '["a","b"]' and out.origin == last.filename
    assert inst.handler.next_deadline() is None
    assert Journal(inst.proc.steps).timers() == []
    state = json.loads((inst.proc.state / "1-window" / "state.json").read_text())
    assert state["state"] == {"windows": []}


def test_a_timed_release_interrupted_by_a_crash_is_finished_on_restart(loom_home: Path) -> None:
    inst = Instance(loom_home, "- window: {size: 10, timeout: 1s}\n- crash_once: {}")
    inst.send("a")
    inst.worker.drain()
    inst.clock.now += 2
    with pytest.raises(Crash):
        inst.handler.on_deadline()
    assert len(Journal(inst.proc.steps).timers()) == 1
    inst.restart()
    assert [json.loads(m.body)[0]["body"] for m in inst.outbox()] == ["a"]
    assert Journal(inst.proc.steps).timers() == []
    inst.restart()
    assert len(inst.outbox()) == 1


def test_a_timer_job_that_never_committed_is_dropped_and_runs_again(loom_home: Path) -> None:
    inst = Instance(loom_home, "- window: {size: 10, timeout: 1s}")
    inst.send("a")
    inst.worker.drain()
    Journal(inst.proc.steps).start_timer("timer-1-X", 0)  # died right after this write
    inst.restart()
    assert Journal(inst.proc.steps).timers() == [] and inst.outbox() == []
    inst.clock.now += 2
    inst.worker.drain()
    assert len(inst.outbox()) == 1


def test_state_is_committed_after_every_message(loom_home: Path) -> None:
    inst = Instance(loom_home, "- accumulate: 'sum([@[0] || `0`, @[1]])'")
    for n in (1, 2):
        inst.send(str(n))
        inst.worker.drain()
        state = json.loads((inst.proc.state / "1-accumulate" / "state.json").read_text())
        assert state["applied"]["job"] == inst.folder(".processed")[-1][:-4]
    assert state["state"] == {"value": 3}


# -- the real process ----------------------------------------------------------------
def start_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "loom", "pipe", "start", *args]


def spawn(reap: list[subprocess.Popen[bytes]], *args: str, cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        start_command(*args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    reap.append(proc)
    return proc


def test_pipe_start_serves_until_sigterm(loom_home: Path, tmp_path: Path, reap: list) -> None:
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "shout.yml").write_text('- command: "tr a-z A-Z"\n')
    instance = "shout~a→b"
    proc = spawn(reap, "shout", "--instance", instance, cwd=tmp_path)
    pdir = homes.pipe_instance(instance, loom_home)
    wait_for(lambda: pdir.status == "idle", what="the pipe to start")
    assert pdir.pid == proc.pid
    assert (loom_home / "pipes" / "shout" / "config.json").is_file()
    queue = Queue(pdir.inbox, pdir.outbox)
    sent = new_message("a", "hello")
    queue.send(sent)
    wait_for(lambda: list_messages(pdir.outbox), what="the result")
    [result] = list_messages(pdir.outbox)
    out = read_message(pdir.outbox / result)
    assert out.body == "HELLO" and out.origin == sent.filename and out.sender == instance
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert pdir.status == "stopped" and pdir.pid is None
    assert pdir.read("started_at") and pdir.read("stopped_at")


CRASH_PIPE = """
- filter: "n != `13`"
- dedupe: {key: n}
- map: "{n: n, tag: join('-', ['n', to_string(n)])}"
- window: {size: 4}
- split: "[*].body"
- map: "n"
"""


def test_sigkill_at_random_points_loses_and_repeats_nothing(
    loom_home: Path, tmp_path: Path, reap: list
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    save_definition(parse_definition(CRASH_PIPE, name="crashy"), loom_home)
    pdir = homes.pipe_instance("crashy", loom_home).create()
    queue = Queue(pdir.inbox, pdir.outbox)
    numbers = list(range(100)) + [rng.randrange(100) for _ in range(20)]
    for n in numbers:
        queue.send(new_message("cli", json.dumps({"n": n})))
    total = len(numbers)

    def processed() -> int:
        return len(list_messages(queue.processed))

    for _ in range(4):
        target = min(total, processed() + rng.randrange(3, 30))
        proc = spawn(reap, "crashy", cwd=tmp_path)

        def progressed(target: int = target, proc: subprocess.Popen[bytes] = proc) -> bool:
            return processed() >= target or proc.poll() is not None

        wait_for(progressed, timeout=30)
        proc.kill()
        proc.wait(timeout=10)
    proc = spawn(reap, "crashy", cwd=tmp_path)
    wait_for(lambda: processed() == total, timeout=30, what=f"all messages (seed {seed})")
    # The earlier runs may have finished the work: wait until this one is serving
    # (its signal handlers are in place) before asking it to stop.
    wait_for(
        lambda: pdir.pid == proc.pid and pdir.status == "idle",
        timeout=30,
        what=f"the last run serving (seed {seed})",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, f"seed {seed}"

    unique = sorted(set(numbers) - {13})
    bodies = [read_message(pdir.outbox / n).body for n in list_messages(pdir.outbox)]
    assert len(bodies) == len(set(bodies)), f"a result was written twice (seed {seed})"
    window = json.loads((pdir.state / "4-window" / "state.json").read_text())
    held = [json.loads(m["body"])["n"] for w in window["state"]["windows"] for m in w["messages"]]
    assert sorted([int(b) for b in bodies] + held) == unique, f"seed {seed}"
    assert len(held) == len(unique) % 4
    from loom.pipeline.state import StateStore

    dedupe_spec = parse_definition(CRASH_PIPE, name="crashy").operators[1]
    saved = StateStore(pdir.state).load(dedupe_spec)
    assert saved is not None
    seen = list(saved.state["seen"]) if saved.state else []
    seen += [k for delta in saved.deltas for k in delta]
    assert sorted({int(k) for k in seen}) == unique
    assert list_messages(queue.in_progress) == [] and queue.pending() == []
