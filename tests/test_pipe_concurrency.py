"""`concurrency: N` on a pipe: N messages in flight in the queued process, exactly once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_loom, spawn_loom, wait_for

from loom.errors import ConfigError
from loom.pipeline import parse_definition, save_definition
from loom.store import home as homes
from loom.store.home import ProcessDir
from loom.store.message import Message, new_message
from loom.store.queue import Queue, list_messages, read_message

# Each run marks itself in DIR, then waits (at most ~20 s) until N runs are marked and no
# `hold` file is there; it answers with the body marked done, or `timeout` when it gave up.
# A run's `alive.<pid>` file exists while it waits: `seen` records how many were alive.
GATE = r"""#!/bin/sh
dir=$1; n=$2
body=$(cat)
mktemp "$dir/run.XXXXXX" >/dev/null
touch "$dir/alive.$$"
ls "$dir" | grep -c '^alive\.' >> "$dir/seen"
i=0
while [ "$(ls "$dir" | grep -c '^run\.')" -lt "$n" ] || [ -e "$dir/hold" ]; do
  i=$((i+1))
  if [ "$i" -gt 400 ]; then rm -f "$dir/alive.$$"; echo timeout; exit 0; fi
  sleep 0.05
done
rm -f "$dir/alive.$$"
printf '%s\n' "$body" | sed 's/}$/, "done": true}/'
"""


def gate_pipe(tmp_path: Path, n: int, concurrency: int, name: str = "slow") -> Path:
    """`pipes/<name>.yml` in a project folder: filter, the gate command, map."""
    gate = tmp_path / "gate.sh"
    gate.write_text(GATE)
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    project = tmp_path / "project"
    (project / "pipes").mkdir(parents=True, exist_ok=True)
    cmd = json.dumps(["sh", str(gate), str(runs), str(n)])
    (project / "pipes" / f"{name}.yml").write_text(
        f"concurrency: {concurrency}\n"
        "operators:\n"
        '  - filter: "n != `-1`"\n'
        f"  - command: {cmd}\n"
        '  - map: "{n: n, done: done}"\n'
    )
    return project


class Served:
    """A pipe instance folder and the real `loom pipe start` processes serving it."""

    def __init__(self, home: Path, project: Path, name: str, reap: list[Any]) -> None:
        self.project = project
        self.name = name
        self.reap = reap
        self.pdir: ProcessDir = homes.pipe_instance(name, home).create()
        self.queue = Queue(self.pdir.inbox, self.pdir.outbox)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        proc = spawn_loom("pipe", "start", self.name, cwd=self.project, stdout=subprocess.DEVNULL)
        self.reap.append(proc)
        self.proc = proc
        wait_for(
            lambda: self.pdir.pid == proc.pid or proc.poll() is not None,
            timeout=20,
            what="the pipe process to start",
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return proc

    def send(self, n: int) -> Message:
        msg = new_message("cli", json.dumps({"n": n}))
        self.queue.send(msg)
        return msg

    def outputs(self) -> list[Message]:
        return [read_message(self.pdir.outbox / f) for f in list_messages(self.pdir.outbox)]

    def processed(self) -> list[str]:
        return list_messages(self.queue.processed)

    def in_progress(self) -> list[str]:
        return list_messages(self.queue.in_progress)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0

    def log_events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.pdir.logs.glob("*.ndjson")):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found


def runs(tmp_path: Path, prefix: str = "run.") -> int:
    return sum(1 for p in (tmp_path / "runs").iterdir() if p.name.startswith(prefix))


def check_exactly_once(served: Served, sent: list[Message]) -> None:
    """One result per input, descending from it, none twice, nothing left in hand."""
    outs = served.outputs()
    by_origin = {m.origin: m for m in outs}
    assert len(by_origin) == len(outs) == len(sent), [m.body for m in outs]
    for msg in sent:
        out = by_origin[msg.filename]
        assert json.loads(out.body) == {"n": json.loads(msg.body)["n"], "done": True}
        assert out.sender == served.name
    assert sorted(served.processed()) == sorted(m.filename for m in sent)
    assert served.in_progress() == [] and served.queue.pending() == []


# -- in flight at once ---------------------------------------------------------------
def test_n_messages_are_in_flight_at_once_and_each_comes_out_once(
    loom_home: Path, tmp_path: Path, reap: list[Any]
) -> None:
    # Each run waits until 3 runs exist: with one message at a time the first would
    # wait alone and time out, so the results prove 3 were in flight together.
    project = gate_pipe(tmp_path, n=3, concurrency=3)
    served = Served(loom_home, project, "slow", reap)
    sent = [served.send(n) for n in range(7)]
    served.start()
    wait_for(lambda: len(served.processed()) == 7, timeout=40, what="all 7 processed")
    check_exactly_once(served, sent)
    seen = [int(x) for x in (tmp_path / "runs" / "seen").read_text().split()]
    assert max(seen) == 3  # never more than the concurrency
    served.stop()
    assert served.pdir.status == "stopped"


def test_results_may_leave_out_of_input_order(
    loom_home: Path, tmp_path: Path, reap: list[Any]
) -> None:
    # The first message is held back while the next two pass: with two in flight, the
    # second finishes first. (With one at a time this would wait for ever: it proves
    # nothing waits for the message ahead of it.)
    gate = tmp_path / "hold-first.sh"
    gate.write_text(
        "#!/bin/sh\n"
        'body=$(cat); dir="$1"\n'
        'case "$body" in *\'"n": 0\'*) i=0\n'
        '  while [ ! -e "$dir/second-done" ] && [ "$i" -lt 400 ]; do\n'
        "    i=$((i+1)); sleep 0.05; done;;\n"
        '  *) touch "$dir/second-done";;\n'
        "esac\n"
        "printf '%s\\n' \"$body\"\n"
    )
    project = tmp_path / "project"
    (project / "pipes").mkdir(parents=True)
    cmd = json.dumps(["sh", str(gate), str(tmp_path)])
    (project / "pipes" / "two.yml").write_text(f"concurrency: 2\noperators:\n  - command: {cmd}\n")
    served = Served(loom_home, project, "two", reap)
    first, second = served.send(0), served.send(1)
    served.start()
    wait_for(lambda: len(served.processed()) == 2, timeout=30, what="both processed")
    done = served.log_events("processed")
    assert [r["msg"] for r in done] == [second.filename, first.filename]
    served.stop()


def test_concurrency_one_keeps_one_message_at_a_time(
    loom_home: Path, tmp_path: Path, reap: list[Any]
) -> None:
    project = gate_pipe(tmp_path, n=1, concurrency=1)
    served = Served(loom_home, project, "slow", reap)
    sent = [served.send(n) for n in range(4)]
    served.start()
    wait_for(lambda: len(served.processed()) == 4, timeout=30, what="all 4 processed")
    check_exactly_once(served, sent)
    assert {int(x) for x in (tmp_path / "runs" / "seen").read_text().split()} == {1}
    # In input order, as before.
    assert [r["msg"] for r in served.log_events("processed")] == [m.filename for m in sent]
    served.stop()


# -- crashes and stops ---------------------------------------------------------------
def test_sigkill_with_n_in_flight_then_restart_is_exactly_once(
    loom_home: Path, tmp_path: Path, reap: list[Any]
) -> None:
    project = gate_pipe(tmp_path, n=3, concurrency=3)
    (tmp_path / "runs" / "hold").touch()
    served = Served(loom_home, project, "slow", reap)
    sent = [served.send(n) for n in range(6)]
    proc = served.start()
    wait_for(lambda: runs(tmp_path) == 3, timeout=20, what="3 runs in flight")
    assert len(served.in_progress()) == 3
    proc.kill()
    proc.wait(timeout=10)
    # The killed process's runs answer into a closed pipe once released; the restart
    # runs the 3 stranded messages again, from the step after the filter.
    (tmp_path / "runs" / "hold").unlink()
    served.start()
    wait_for(lambda: len(served.processed()) == 6, timeout=40, what="all 6 processed")
    check_exactly_once(served, sent)
    resumed = {r["msg"] for r in served.log_events("resuming")}
    assert len(resumed) == 3 and resumed <= {m.filename for m in sent}
    served.stop()


def test_sigterm_lets_the_messages_in_flight_finish_and_claims_no_more(
    loom_home: Path, tmp_path: Path, reap: list[Any]
) -> None:
    project = gate_pipe(tmp_path, n=3, concurrency=3)
    (tmp_path / "runs" / "hold").touch()
    served = Served(loom_home, project, "slow", reap)
    sent = [served.send(n) for n in range(5)]
    proc = served.start()
    wait_for(lambda: runs(tmp_path) == 3, timeout=20, what="3 runs in flight")
    proc.send_signal(signal.SIGTERM)
    (tmp_path / "runs" / "hold").unlink()
    assert proc.wait(timeout=30) == 0
    assert len(served.processed()) == 3 and served.in_progress() == []
    assert len(served.outputs()) == 3
    assert len(served.queue.pending()) == 2  # never claimed
    assert served.pdir.status == "stopped"
    # The next run takes the other two; everything is there once.
    served.start()
    wait_for(lambda: len(served.processed()) == 5, timeout=30, what="all 5 processed")
    check_exactly_once(served, sent)
    served.stop()


CRASHY = """\
concurrency: 4
operators:
  - filter: "n != `13`"
  - command: cat
  - split: "[{n: n, k: 'a'}, {n: n, k: 'b'}]"
  - map: "{n: n, k: k}"
"""


def test_sigkill_at_random_points_with_four_in_flight_loses_and_repeats_nothing(
    loom_home: Path, tmp_path: Path, reap: list[Any]
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    save_definition(parse_definition(CRASHY, name="crashy"), loom_home)
    served = Served(loom_home, tmp_path, "crashy", reap)
    for n in range(60):
        served.send(n)
    for _ in range(3):
        target = min(60, len(served.processed()) + rng.randrange(3, 20))
        proc = served.start()

        def progressed(target: int = target, proc: subprocess.Popen[bytes] = proc) -> bool:
            return len(served.processed()) >= target or proc.poll() is not None

        wait_for(progressed, timeout=30)
        proc.kill()
        proc.wait(timeout=10)
    served.start()
    wait_for(lambda: len(served.processed()) == 60, timeout=40, what=f"all 60 (seed {seed})")
    bodies = [m.body for m in served.outputs()]
    assert len(bodies) == len(set(bodies)), f"a result was written twice (seed {seed})"
    expected = {json.dumps({"n": n, "k": k}) for n in range(60) if n != 13 for k in "ab"}
    assert {json.dumps(json.loads(b)) for b in bodies} == expected, f"seed {seed}"
    assert served.in_progress() == [] and served.queue.pending() == []
    served.stop()


# -- validation ------------------------------------------------------------------------
def test_a_stateful_operator_with_concurrency_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "bad.yml").write_text(
        'concurrency: 4\noperators:\n  - map: "@"\n  - dedupe: {key: id}\n'
    )
    result = run_loom("pipe", "run", "bad", input="{}\n", cwd=tmp_path)
    assert result.returncode != 0 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "bad.yml:4" in line and "operator 2 (dedupe)" in line
    assert "concurrency 4" in line and "order" in line


def test_loom_validate_refuses_it_in_loom_yml_too(tmp_path: Path) -> None:
    (tmp_path / "loom.yml").write_text(
        "version: 1\n"
        "pipes:\n"
        "  counted:\n"
        "    concurrency: 2\n"
        "    operators:\n"
        '      - accumulate: {expr: "[0]"}\n'
    )
    result = run_loom("validate", cwd=tmp_path)
    assert result.returncode != 0
    assert "accumulate" in result.stderr and "concurrency 2" in result.stderr


@pytest.mark.parametrize("value", ["0", "257", "'2'", "true", "1.5", "-3"])
def test_concurrency_must_be_a_whole_number_from_1_to_256(value: str) -> None:
    with pytest.raises(ConfigError, match=r"key 'concurrency': must be a whole number from 1"):
        parse_definition(f"concurrency: {value}\noperators:\n  - map: '@'\n", name="p")


def test_concurrency_is_stored_and_read_back_and_left_out_at_one(loom_home: Path) -> None:
    many = parse_definition("concurrency: 256\noperators:\n  - command: cat\n", name="p")
    assert many.concurrency == 256 and many.to_json_data()["concurrency"] == 256
    path = save_definition(many, loom_home)
    from loom.pipeline import load_file

    assert load_file(path).concurrency == 256
    one = parse_definition("operators:\n  - dedupe: {key: id}\n", name="q")
    assert one.concurrency == 1 and "concurrency" not in one.to_json_data()
    # Stateful operators are fine one message at a time.
    assert parse_definition("concurrency: 1\noperators:\n  - window: {size: 2}\n", name="w")


def test_the_foreground_runs_one_message_at_a_time_in_input_order(tmp_path: Path) -> None:
    gate = tmp_path / "gate.sh"
    gate.write_text(GATE)
    (tmp_path / "runs").mkdir()
    pipe = tmp_path / "fg.yml"
    cmd = json.dumps(["sh", str(gate), str(tmp_path / "runs"), "1"])
    pipe.write_text(f"concurrency: 8\noperators:\n  - command: {cmd}\n")
    lines = "".join(json.dumps({"n": n}) + "\n" for n in range(5))
    result = run_loom("pipe", "run", str(pipe), input=lines)
    assert result.returncode == 0, result.stderr
    assert [json.loads(x)["n"] for x in result.stdout.splitlines()] == list(range(5))
    assert {int(x) for x in (tmp_path / "runs" / "seen").read_text().split()} == {1}
