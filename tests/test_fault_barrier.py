"""Whatever one message holds, it ends in exactly one place and the process goes on (SPEC 4).

Hostile files go into the inboxes and a routed outbox of a real weave run by the
supervisor (agent → pipe → agent, `echo` model); afterwards every process still runs
with the pid it had, and a normal message is still answered end to end.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import logged_events, run_loom, spawn_loom, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_server import LLMServer, Reply, Slow

from loom.errors import UnreadableMessage
from loom.store.home import ProcessDir, pid_is_loom
from loom.store.ids import new_id
from loom.store.logs import Log
from loom.store.message import MAX_BYTES, Message, new_message
from loom.store.queue import Queue, read_message
from loom.store.usage import RETRY_S, WRITE_EVERY_S, UsageCounter, read

FAST = {"LOOM_RESTART_BASE": "0.05", "LOOM_RESTART_JITTER": "0.05"}
PIPE = "tag~first→last"
SETTLED = (".processed", ".failed", ".unreadable")
DEEP = "[" * 100_000 + "]" * 100_000


# -- hostile files -------------------------------------------------------------------
def fresh_name() -> str:
    ts, mid = new_id()
    return f"{ts}-{mid}.msg"


def envelope_text(body_json: str, **fields: str) -> str:
    ts, mid = new_id()
    head = {"v": "1", "id": f'"{mid}"', "from": '"test"', "ts": str(ts), **fields}
    parts = [f'"{k}":{v}' for k, v in head.items()]
    return "{" + ",".join(parts) + f',"body":{body_json}' + "}"


def regular(data: bytes | str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        # Written long ago: not a file some tool is still writing (queue grace period).
        os.utime(path, (1_000_000_000, 1_000_000_000))

    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)


def directory(path: Path) -> None:
    path.mkdir()


def dangling_link(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere" / "x.msg")


def link_to_message(path: Path) -> None:
    real = path.parent.parent / f"real-{path.name}"
    real.write_text(new_message("test", "hello").to_json())
    path.symlink_to(real)


def too_large(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: nothing is written, the size is what counts
    os.utime(path, (1_000_000_000, 1_000_000_000))


# Each kind of hostile file, and where it must end up in an inbox's queue.
HOSTILE: dict[str, tuple[Callable[[Path], None], str | None]] = {
    "lone surrogate in body": (regular(envelope_text('"\\ud800 and \\udfff"')), ".processed"),
    "deep array": (regular(DEEP), ".unreadable"),
    "dangling symlink": (dangling_link, ".unreadable"),
    "symlink to a message": (link_to_message, ".unreadable"),
    "fifo": (fifo, ".unreadable"),
    "directory": (directory, ".unreadable"),
    "over the size limit": (too_large, ".unreadable"),
    "binary garbage": (regular(bytes(range(256)) * 4), ".unreadable"),
    "wrong field type": (regular(envelope_text('"x"', id="5")), ".unreadable"),
    "not an object": (regular("[1, 2, 3]"), ".unreadable"),
    "NaN": (regular(envelope_text('"x"', ts="NaN")), ".unreadable"),
    "huge number": (regular(envelope_text('"x"', ts="1e999")), ".unreadable"),
    "a ts of 5000 digits": (regular(envelope_text('"x"', ts="9" * 5000)), ".unreadable"),
}


def drop(make: Callable[[Path], None], path: Path) -> None:
    """Make a hostile entry beside its folder, then rename it in (it appears whole)."""
    staging = path.parent.parent / f"staging-{path.name}"
    make(staging)
    os.rename(staging, path)


def places(inbox: Path, name: str) -> list[str]:
    """Every queue folder of `inbox` where an entry `name` is (symlinks count)."""
    found = []
    for folder in ("", ".in-progress", *SETTLED):
        if os.path.lexists(inbox / folder / name):
            found.append(folder or "inbox")
    return found


# -- the weave -----------------------------------------------------------------------
@dataclass
class Weave:
    home: Path
    work: Path

    def dir(self, process: str) -> Path:
        return self.home / ("pipes" if "~" in process else "agents") / process

    def pid(self, process: str) -> int | None:
        path = (
            self.home / "supervisor.pid" if process == "supervisor" else self.dir(process) / "pid"
        )
        try:
            raw = path.read_text().strip()
        except FileNotFoundError:
            return None
        return int(raw) if raw.isdigit() and pid_is_loom(int(raw)) else None

    def pids(self) -> dict[str, int | None]:
        return {p: self.pid(p) for p in ("first", "last", PIPE, "supervisor")}

    def finals(self) -> dict[str, dict[str, object]]:
        """Outputs of `last`, by the root of their origin."""
        found = {}
        outbox = self.dir("last") / "outbox"
        for name in os.listdir(outbox) if outbox.is_dir() else []:
            if name.endswith(".msg"):
                msg = json.loads((outbox / name).read_text())
                found[str(msg["origin"]).split("/")[0]] = msg
        return found

    def round_trip(self) -> None:
        """A normal message sent to `first` comes out of `last`."""
        msg = new_message("test", json.dumps({"n": 1}))
        Queue(self.dir("first") / "inbox", self.dir("first") / "outbox").send(msg)
        wait_for(lambda: msg.filename in self.finals(), timeout=30, what="the final answer")


@pytest.fixture
def weave(tmp_path: Path, loom_home: Path) -> Iterator[Weave]:
    work = tmp_path / "w"
    work.mkdir()
    (work / "loom.yml").write_text(
        "version: 1\n"
        "pipes:\n"
        "  tag:\n"
        '    - map: "{n: n, seen: `true`}"\n'
        "agents:\n"
        "  - {name: first, model: echo}\n"
        "  - name: last\n"
        "    model: echo\n"
        "    from: [{agent: first, pipe: tag}]\n"
    )
    r = run_loom("up", "-d", cwd=work, env=FAST)
    assert r.returncode == 0, r.stderr
    w = Weave(loom_home, work)
    wait_for(lambda: all(w.pids().values()), timeout=30, what="the weave running")
    w.round_trip()
    try:
        yield w
    finally:
        run_loom("down", cwd=work)
        sup = w.pid("supervisor")
        if sup:
            os.kill(sup, signal.SIGKILL)


# -- inboxes -------------------------------------------------------------------------
@pytest.mark.parametrize("process", ["first", PIPE])
def test_hostile_inbox_files_each_end_in_one_place_and_the_process_lives_on(
    weave: Weave, process: str
) -> None:
    before = weave.pids()
    inbox = weave.dir(process) / "inbox"
    dropped = {}
    for kind, (make, _) in HOSTILE.items():
        name = fresh_name()
        drop(make, inbox / name)
        dropped[kind] = name

    def where() -> dict[str, list[str]]:
        return {kind: places(inbox, name) for kind, name in dropped.items()}

    expected = {kind: [place] for kind, (_, place) in HOSTILE.items()}
    wait_for(lambda: where() == expected, timeout=30, what=f"every file settled: {where()}")
    for kind in ("fifo", "over the size limit", "dangling symlink"):
        note = json.loads((inbox / ".unreadable" / f"{dropped[kind]}.error.json").read_text())
        assert {"fifo": "FIFO", "over the size limit": "too large", "dangling symlink": "link"}[
            kind
        ] in note["reason"]
    assert weave.pids() == before
    weave.round_trip()


def test_a_lone_surrogate_is_answered_and_reads_back_identically(weave: Weave) -> None:
    inbox = weave.dir("first") / "inbox"
    name = fresh_name()
    drop(regular(envelope_text('"a\\ud800b"')), inbox / name)
    reply = wait_for(lambda: weave.finals().get(name), timeout=30, what="the reply routed on")
    # `last` echoes what the pipe made of it: the string, evaluated as a JSON string.
    assert reply.get("error") is not True
    first_reply = next(
        json.loads(p.read_bytes())
        for p in (weave.dir("first") / "outbox").iterdir()
        if p.suffix == ".msg" and name in p.read_text()
    )
    assert first_reply["body"] == "a\ud800b"
    conversation = "".join(p.read_text() for p in (weave.dir("first") / "conversations").iterdir())
    assert any(json.loads(line)["content"] == "a\ud800b" for line in conversation.splitlines())


def test_a_deep_json_body_is_settled_by_the_pipe_which_goes_on(weave: Weave) -> None:
    before = weave.pids()
    msg = new_message("test", DEEP)
    inbox = weave.dir(PIPE) / "inbox"
    Queue(inbox, weave.dir(PIPE) / "outbox").send(msg)
    # Too deep to be JSON for the pipe, so its expressions see it as a JSON string.
    wait_for(lambda: places(inbox, msg.filename) == [".processed"], timeout=30, what="settled")
    wait_for(lambda: msg.filename in weave.finals(), timeout=30, what="the result routed on")
    assert weave.pids() == before


# -- the router ----------------------------------------------------------------------
def router_log(home: Path) -> list[dict[str, object]]:
    logs = home / "router" / "logs"
    lines = "".join(p.read_text() for p in logs.iterdir()) if logs.is_dir() else ""
    return [json.loads(line) for line in lines.splitlines()]


def test_hostile_routed_outbox_files_are_skipped_and_routing_goes_on(weave: Weave) -> None:
    before = weave.pids()
    outbox = weave.dir("first") / "outbox"
    dropped = {}
    for kind in ("deep array", "fifo", "dangling symlink", "symlink to a message", "NaN"):
        name = fresh_name()
        drop(HOSTILE[kind][0], outbox / name)
        dropped[kind] = name

    def reported() -> set[str]:
        return {str(r.get("msg")) for r in router_log(weave.home) if r["level"] == "error"}

    wait_for(
        lambda: set(dropped.values()) <= reported(),
        timeout=30,
        what=f"each file reported: {set(dropped.values()) - reported()}",
    )
    stats = wait_for(
        lambda: json.loads((weave.home / "router/stats.json").read_text())["routes"][0],
        what="router stats",
    )
    wait_for(
        lambda: (
            json.loads((weave.home / "router/stats.json").read_text())["routes"][0]["errors"]
            >= len(dropped)
        ),
        what=f"errors counted ({stats})",
    )
    pipe_inbox = weave.dir(PIPE) / "inbox"
    assert not any(places(pipe_inbox, n) for n in dropped.values())
    assert weave.pids() == before
    weave.round_trip()


# -- model replies -------------------------------------------------------------------
def test_a_model_reply_with_a_lone_surrogate_is_written_once(
    server: LLMServer, loom_home: Path
) -> None:
    server.script(Reply("half \ud83d of an emoji"))
    env = {**server.env(), "OPENAI_API_KEY": "sk-test", **FAST}
    r = run_loom("agent", "start", "a", "--model", "openai/gpt-test", "-d", env=env)
    assert r.returncode == 0, r.stderr
    agent = loom_home / "agents/a"
    try:
        pid = wait_for(lambda: (agent / "pid").read_text().strip(), what="runner started")
        msg = new_message("test", "hello")
        Queue(agent / "inbox", agent / "outbox").send(msg)
        wait_for(
            lambda: places(agent / "inbox", msg.filename) == [".processed"],
            timeout=30,
            what="the message answered",
        )
        [reply] = [p for p in (agent / "outbox").iterdir() if p.suffix == ".msg"]
        assert json.loads(reply.read_bytes())["body"] == "half \ud83d of an emoji"
        assert len(server.requests) == 1
        assert (agent / "pid").read_text().strip() == pid
        assert not (agent / "crashes").is_dir() or not os.listdir(agent / "crashes")
    finally:
        run_loom("agent", "stop", "a")
        raw = (loom_home / "supervisor.pid").read_text().strip()
        if raw.isdigit() and pid_is_loom(int(raw)):
            os.kill(int(raw), signal.SIGKILL)


# -- a full disk -----------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, so a test can fill it (needs the right to mount: else skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip("mounting a small tmpfs is not permitted here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def waiting(inbox: Path, name: str) -> bool:
    """Whether message `name` is in the inbox or claimed, and nowhere else. Looked up
    again if found nowhere: a claim put back (or taken again) between the looks at the
    inbox and at `.in-progress/` is in neither at those instants, and is not lost."""
    for _ in range(5):
        found = places(inbox, name)
        if found:
            return found in (["inbox"], [".in-progress"])
    return False


def holds_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` stays true for `seconds` (an observation window)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not condition():
            return False
        time.sleep(0.02)
    return True


def test_a_full_disk_pauses_the_runner_and_it_resumes_when_space_returns(
    small_disk: Path, tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    home = small_disk / "home"
    env = {"LOOM_HOME": str(home)}
    with open(tmp_path / "stderr.txt", "wb") as err:
        runner = spawn_loom(
            "agent", "start", "a", "--model", "echo", env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    reap.append(runner)
    agent = home / "agents/a"
    wait_for(lambda: (agent / "status").is_file() and (agent / "inbox/.processed").is_dir())
    msg = new_message("test", "hello, full disk")
    staged = small_disk / msg.filename
    staged.write_bytes(msg.to_bytes())
    filler = fill(small_disk)
    os.rename(staged, agent / "inbox" / msg.filename)
    inbox = agent / "inbox"
    # The runner claims it, cannot write the reply, and keeps it; it does not fail it.
    wait_for(lambda: places(inbox, msg.filename) == [".in-progress"], what="claimed")
    kept = holds_for(lambda: waiting(inbox, msg.filename), 2.0)
    assert kept, places(inbox, msg.filename)
    assert runner.poll() is None, (tmp_path / "stderr.txt").read_text()
    filler.unlink()
    wait_for(lambda: places(inbox, msg.filename) == [".processed"], timeout=60, what="answered")
    [reply] = [p for p in (agent / "outbox").iterdir() if p.suffix == ".msg"]
    assert json.loads(reply.read_bytes())["body"] == msg.body
    # Said once a whole drain went through, so after the message's own lines.
    events = wait_for(
        lambda: "resumed" in (found := logged_events(agent)) and found, what="the resumed line"
    )
    assert "failed" not in events and "unreadable" not in events
    assert runner.poll() is None
    runner.send_signal(signal.SIGTERM)
    runner.wait(timeout=20)


def spawn_serve(
    home: Path, env: dict[str, str], log: Path, reap: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """`loom agent serve a`, as the supervisor runs a detached agent; output to `log`."""
    with open(log, "ab") as err:
        runner = spawn_loom(
            "agent", "serve", "a", env={"LOOM_HOME": str(home), **env}, stdout=err, stderr=err
        )
    reap.append(runner)
    return runner


def serve_detached(
    home: Path, model: str, env: dict[str, str], log: Path, reap: list[subprocess.Popen[bytes]]
) -> tuple[Path, subprocess.Popen[bytes]]:
    """A new detached agent `a` of concurrency 4, served; its folder and its runner."""
    agent = home / "agents/a"
    agent.mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    (agent / "model").write_text(f"{model}\n")
    (agent / "concurrency").write_text("4\n")
    runner = spawn_serve(home, env, log, reap)
    wait_for(lambda: (agent / "status").is_file() and (agent / "inbox/.processed").is_dir())
    return agent, runner


def answered_once(agent: Path, sent: list[Message]) -> None:
    """Wait until every message of `sent` is processed; check each has one reply."""
    inbox = agent / "inbox"
    wait_for(
        lambda: all(places(inbox, m.filename) == [".processed"] for m in sent),
        timeout=60,
        what="all answered",
    )
    replies = [json.loads(p.read_bytes()) for p in (agent / "outbox").glob("*.msg")]
    parents = sorted(str(r["origin"]).rsplit("/", 1)[-1] for r in replies)
    assert parents == sorted(m.filename for m in sent)
    wait_for(lambda: (agent / "status").read_text().strip() == "idle", what="idle again")


def test_a_full_disk_with_calls_in_flight_pauses_and_every_message_is_answered_once(
    small_disk: Path, tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    # The disk is full before the claims: the status, the replies and the logs all fail.
    log = tmp_path / "stderr.txt"
    agent, runner = serve_detached(small_disk / "home", "echo", {}, log, reap)
    sent = [new_message("test", f"message {i}") for i in range(12)]
    staged = small_disk / "staged"
    staged.mkdir()
    for msg in sent:
        (staged / msg.filename).write_bytes(msg.to_bytes())
    filler = fill(small_disk)
    inbox = agent / "inbox"
    for msg in sent:
        os.rename(staged / msg.filename, inbox / msg.filename)
    wait_for(
        lambda: any(places(inbox, m.filename) == [".in-progress"] for m in sent), what="claimed"
    )
    kept = holds_for(lambda: all(waiting(inbox, m.filename) for m in sent), 2.0)
    assert kept, [places(inbox, m.filename) for m in sent]
    assert runner.poll() is None, log.read_text()
    filler.unlink()
    answered_once(agent, sent)
    assert runner.poll() is None, log.read_text()
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 0, log.read_text()


@dataclass
class CutOff:
    """A detached agent whose four calls in flight ended on a full disk."""

    agent: Path
    runner: subprocess.Popen[bytes]
    queue: Queue
    sent: list[Message]
    filler: Path  # delete it to give the space back
    env: dict[str, str]


@pytest.fixture
def cut_off(
    server: LLMServer, small_disk: Path, tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> CutOff:
    """Six messages to an agent of concurrency 4: four of them are at the model (slow
    calls) when the disk fills, and those calls then end with nowhere to write."""
    server.script(*[Slow(2.0, f"answer {i}") for i in range(4)])
    env = {**server.env(), "OPENAI_API_KEY": "sk-test"}
    agent, runner = serve_detached(
        small_disk / "home", "openai/gpt-test", env, tmp_path / "log", reap
    )
    sent = [new_message("test", f"message {i}") for i in range(6)]
    queue = Queue(agent / "inbox", agent / "outbox")
    for msg in sent:
        queue.send(msg)
    wait_for(lambda: server.open_now == 4, timeout=15, what="four calls at the model")
    filler = fill(small_disk)
    wait_for(lambda: len(server.requests) == 4 and server.open_now == 0, what="calls ended")
    return CutOff(agent, runner, queue, sent, filler, env)


def test_a_disk_that_fills_while_calls_are_in_flight_pauses_and_loses_nothing(
    cut_off: CutOff, server: LLMServer, tmp_path: Path
) -> None:
    # Their replies and the status they leave behind fail in four call threads, which
    # go on serving once space returns.
    agent, runner, log = cut_off.agent, cut_off.runner, tmp_path / "log"
    assert holds_for(lambda: not list((agent / "outbox").glob("*.msg")), 1.0)
    assert runner.poll() is None, log.read_text()
    cut_off.filler.unlink()
    answered_once(agent, cut_off.sent)
    # Then the kept call threads answer more, four at a time.
    server.script(*[Slow(0.5, f"more {i}") for i in range(8)])
    more = [new_message("test", f"more {i}") for i in range(8)]
    for msg in more:
        cut_off.queue.send(msg)
    wait_for(lambda: server.open_now == 4, timeout=15, what="four calls at once again")
    answered_once(agent, cut_off.sent + more)
    assert runner.poll() is None, log.read_text()
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 0, log.read_text()


def test_a_runner_killed_while_a_full_disk_holds_its_calls_loses_nothing(
    cut_off: CutOff, small_disk: Path, tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    # SIGKILL while paused with replies unwritten; the next runner, once space returns,
    # answers each message exactly once.
    cut_off.runner.kill()
    cut_off.runner.wait(timeout=10)
    cut_off.filler.unlink()
    log = tmp_path / "log"
    runner = spawn_serve(small_disk / "home", cut_off.env, log, reap)
    answered_once(cut_off.agent, cut_off.sent)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 0, log.read_text()


# -- the reader and the writer, on real files ---------------------------------------------
def test_a_file_over_the_size_limit_is_unreadable_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / fresh_name()
    too_large(path)
    with pytest.raises(UnreadableMessage) as caught:
        read_message(path)
    assert str(caught.value) == f"too large: {MAX_BYTES + 1} bytes, limit {MAX_BYTES}"


def test_records_and_logs_holding_lone_surrogates_are_written_and_read_back(
    tmp_path: Path,
) -> None:
    queue = Queue(tmp_path / "inbox", tmp_path / "outbox").ensure()
    msg = new_message("t\udc80", "body \ud800")
    queue.send(msg)
    queue.claim(msg.filename)
    reply = msg.reply("a", "could not: \udfff", error=True)
    queue.fail(msg.filename, reply, error_type="internal", last_error="bad \ud800", attempts=1)
    record = json.loads((queue.failed / f"{msg.filename}.error.json").read_bytes())
    assert record["last_error"] == "bad \ud800"
    assert read_message(queue.failed / msg.filename) == msg
    assert read_message(queue.outbox / reply.filename).body == "could not: \udfff"
    Log(tmp_path / "logs", "a").error("failed", msg=msg.filename, error="bad \ud800")
    [line] = "".join(p.read_text() for p in (tmp_path / "logs").iterdir()).splitlines()
    assert json.loads(line)["error"] == "bad \ud800"


# -- everything at once, generated ---------------------------------------------------------
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False)
)
wrong_fields = st.dictionaries(
    st.sampled_from(["v", "id", "from", "ts", "body", "origin", "error", "to"]),
    st.one_of(json_scalars, st.lists(json_scalars, max_size=3)),
    min_size=3,
)
hostile_entries = st.one_of(
    st.sampled_from(sorted(HOSTILE)).map(lambda kind: HOSTILE[kind][0]),
    st.binary(max_size=300).map(regular),
    # `v` stays 1 when it is an integer: a newer schema stops the consumer (SPEC 2).
    wrong_fields.map(
        lambda d: regular(json.dumps(d | ({"v": 1} if type(d.get("v")) is int else {})))
    ),
    st.text(max_size=50).map(lambda body: regular(new_message("gen", body).to_bytes())),
)
TARGETS = ("first inbox", "pipe inbox", "routed outbox")


def test_generated_hostile_files_never_stop_the_weave(weave: Weave) -> None:
    before = weave.pids()
    folders = {
        "first inbox": weave.dir("first") / "inbox",
        "pipe inbox": weave.dir(PIPE) / "inbox",
        "routed outbox": weave.dir("first") / "outbox",
    }

    def accounted(target: str, name: str) -> bool:
        if target != "routed outbox":
            return places(folders[target], name) in ([p] for p in SETTLED)
        # The router either delivered it (then the pipe settles it) or reported it.
        if any(r.get("msg") == name and r["level"] == "error" for r in router_log(weave.home)):
            return True
        return places(folders["pipe inbox"], name) in ([p] for p in SETTLED)

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(st.tuples(st.sampled_from(TARGETS), hostile_entries), min_size=1, max_size=3))
    def drop_and_settle(entries: list[tuple[str, Callable[[Path], None]]]) -> None:
        dropped = []
        for target, make in entries:
            name = fresh_name()
            drop(make, folders[target] / name)
            dropped.append((target, name))
        wait_for(
            lambda: all(accounted(t, n) for t, n in dropped),
            timeout=30,
            what=f"accounted for: {[(t, n) for t, n in dropped if not accounted(t, n)]}",
        )

    drop_and_settle()
    assert weave.pids() == before
    weave.round_trip()


# -- a thread limit ------------------------------------------------------------------
# Loaded by the runner's interpreter from PYTHONPATH: the threads for model calls past
# the first `LIMIT` cannot be started, as at a process or thread limit (which cannot be
# imposed on root, who runs the suite in CI).
THREAD_LIMIT = """\
import os
import threading

LIMIT = int(os.environ["CALL_THREAD_LIMIT"])
_start = threading.Thread.start


def start(self):
    if self.name.startswith("call ") and int(self.name.split()[1]) > LIMIT:
        raise RuntimeError("can't start new thread")
    return _start(self)


threading.Thread.start = start
"""


def thread_limit(tmp_path: Path, limit: int) -> dict[str, str]:
    """The environment of a runner that can start only `limit` call threads."""
    folder = tmp_path / "limit"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(THREAD_LIMIT)
    return {"PYTHONPATH": str(folder), "CALL_THREAD_LIMIT": str(limit)}


def test_a_runner_that_cannot_start_all_its_call_threads_answers_with_those_it_has(
    server: LLMServer, tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    server.script(*[Slow(0.5, f"answer {i}") for i in range(8)])
    env = {**server.env(), "OPENAI_API_KEY": "sk-test", **thread_limit(tmp_path, 2)}
    home = tmp_path / "home"
    agent, runner = serve_detached(home, "openai/gpt-test", env, tmp_path / "log", reap)
    sent = [new_message("test", f"message {i}") for i in range(8)]
    queue = Queue(agent / "inbox", agent / "outbox")
    for msg in sent:
        queue.send(msg)
    answered_once(agent, sent)
    assert server.max_open == 2  # of concurrency 4
    assert runner.poll() is None
    log = "".join(p.read_text() for p in (agent / "logs").glob("*.ndjson"))
    warnings = [json.loads(line) for line in log.splitlines() if "fewer calls" in line]
    assert len(warnings) == 1
    assert warnings[0]["detail"] == "2 of 4 (a thread limit)"


def test_a_runner_that_cannot_start_a_call_thread_ends_and_the_next_answers_once(
    server: LLMServer, tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    env = {**server.env(), "OPENAI_API_KEY": "sk-test"}
    home = tmp_path / "home"
    log = tmp_path / "log"
    agent, runner = serve_detached(
        home, "openai/gpt-test", {**env, **thread_limit(tmp_path, 0)}, log, reap
    )
    msg = new_message("test", "message 0")
    Queue(agent / "inbox", agent / "outbox").send(msg)
    assert runner.wait(timeout=30) != 0
    assert "cannot start a thread for a model call: can't start new thread" in log.read_text()
    assert places(agent / "inbox", msg.filename) == [".in-progress"]
    assert not server.requests

    spawn_serve(home, env, log, reap)  # no limit now: recovery takes the claim back
    answered_once(agent, [msg])


def test_token_totals_a_full_disk_kept_from_the_file_are_written_soon_after(
    small_disk: Path,
) -> None:
    # A runner's UsageCounter on the real small disk: the failed rewrite is owed and
    # due again within WRITE_EVERY_S, not after the long wait of a file that cannot be
    # written at all (RETRY_S), so the totals follow once the pause is over.
    proc = ProcessDir(small_disk, "agents", "a")
    proc.path.mkdir(parents=True)
    counter = UsageCounter(proc)
    filler = fill(small_disk)
    with pytest.raises(OSError) as full:
        counter.add("openai/m", 7, 2, defer=False)
    assert full.value.errno == errno.ENOSPC
    due = counter.due()
    assert due is not None and due <= time.monotonic() + WRITE_EVERY_S
    filler.unlink()
    counter.flush()
    assert read(proc).models == {"openai/m": {"input": 7, "output": 2}}
    assert counter.due() is None

    # A usage.json that is a folder cannot be replaced: tried again only after RETRY_S.
    (proc.path / "usage.json").unlink()
    (proc.path / "usage.json").mkdir()
    with pytest.raises(OSError):
        counter.add("openai/m", 1, 1, defer=False)
    due = counter.due()
    assert due is not None and due > time.monotonic() + RETRY_S / 2
