"""The inbox lifecycle (SPEC 4) on real files."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from loom.store import atomic
from loom.store.message import new_message
from loom.store.queue import Queue, read_message


def make_queue(tmp_path: Path) -> Queue:
    return Queue(tmp_path / "inbox", tmp_path / "outbox").ensure()


def test_send_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    msgs = [new_message("cli", f"m{i}") for i in range(20)]
    for m in msgs:
        q.send(m)
    assert q.pending() == [m.filename for m in msgs]
    assert [p.name for p in q.inbox.iterdir() if p.name.startswith(".tmp")] == []


def test_exactly_one_of_many_consumers_claims_a_message(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    names = [q.send(new_message("cli", str(i))).name for i in range(200)]
    claimed: list[list[str]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def consume(slot: int) -> None:
        barrier.wait()
        for name in names:
            if q.claim(name) is not None:
                claimed[slot].append(name)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sorted(n for c in claimed for n in c)
    assert everything == sorted(names)


def test_ack_moves_to_processed(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    name = q.send(new_message("cli", "x")).name
    assert q.claim(name) is not None
    q.acknowledge(name)
    assert (q.processed / name).exists()
    assert q.pending() == [] and os.listdir(q.in_progress) == []


def test_fail_writes_the_reply_then_the_record(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    msg = new_message("cli", "x")
    q.send(msg)
    q.claim(msg.filename)
    reply = msg.reply("a", "a could not answer: boom", error=True)
    q.fail(msg.filename, reply, error_type="server_error", last_error="boom", attempts=4)
    assert read_message(q.outbox / reply.filename).error is True
    record = json.loads((q.failed / f"{msg.filename}.error.json").read_text())
    assert record["attempts"] == 4 and record["error_type"] == "server_error"
    assert record["last_error"] == "boom" and "ts" in record
    assert (q.failed / msg.filename).exists()


def test_quarantine_keeps_the_file_and_says_why(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    (q.inbox / "1-bad.msg").write_bytes(b"\xff\xfe not json")
    q.claim("1-bad.msg")
    q.quarantine("1-bad.msg", "not valid JSON")
    assert (q.unreadable / "1-bad.msg").read_bytes() == b"\xff\xfe not json"
    assert "not valid JSON" in (q.unreadable / "1-bad.msg.error.json").read_text()


def test_recover_acks_answered_requeues_unanswered_and_fails_failed(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    answered, unanswered, failed = (new_message("cli", s) for s in ("a", "b", "c"))
    for m in (answered, unanswered, failed):
        q.send(m)
        q.claim(m.filename)
    q.emit(answered.reply("a", "done"))
    q.emit(failed.reply("a", "could not answer", error=True))
    report = q.recover()
    assert report.acknowledged == [answered.filename]
    assert report.requeued == [unanswered.filename]
    assert report.failed == [failed.filename]
    assert q.pending() == [unanswered.filename]
    assert (q.processed / answered.filename).exists()
    assert (q.failed / f"{failed.filename}.error.json").exists()
    # Nothing answered twice: the outbox still holds one reply per answered message.
    assert len(os.listdir(q.outbox)) == 2


def test_a_young_unparseable_file_is_given_back_as_half_written(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    (q.inbox / "1-half.msg").write_text('{"v": 1, "id": "half", "fr')
    q.claim("1-half.msg")
    assert q.half_written("1-half.msg") is True
    assert (q.inbox / "1-half.msg").exists()
    assert q.pending() == []  # deferred for a moment, so nobody spins on it
    q.deferred.clear()
    assert q.pending() == ["1-half.msg"]
    os.utime(q.inbox / "1-half.msg", (1, 1))
    q.claim("1-half.msg")
    assert q.half_written("1-half.msg") is False


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "status"
    atomic.write_text(target, "idle\n")
    atomic.write_text(target, "running\n")
    assert target.read_text() == "running\n"
    assert [p.name for p in tmp_path.iterdir()] == ["status"]


def test_atomic_writes_take_plain_strings_and_survive_a_killed_writers_leftovers(
    tmp_path: Path,
) -> None:
    target = tmp_path / "state.json"
    # A writer killed between creating its temporary file and the rename leaves it behind.
    (tmp_path / ".tmp-state.json-00000000").write_bytes(b"torn")
    for fsync in (False, True):
        atomic.set_fsync(fsync)
        try:
            atomic.write_bytes(str(target), b"one")
            atomic.write_text(target, "two")
            atomic.append_line(str(tmp_path / "log"), "line")
            atomic.rename(str(target), str(tmp_path / "moved.json"))
            atomic.rename(tmp_path / "moved.json", target)
        finally:
            atomic.set_fsync(None)
    assert target.read_text() == "two"
    assert (tmp_path / "log").read_text() == "line\nline\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".tmp-state.json-00000000",
        "log",
        "state.json",
    ]


def test_acknowledge_and_read_claimed_work_on_the_claimed_file(tmp_path: Path) -> None:
    q = make_queue(tmp_path)
    msg = new_message("cli", "x")
    q.send(msg)
    assert q.claim(msg.filename) == str(q.in_progress / msg.filename)
    assert q.claimed_path(msg.filename) == str(q.in_progress / msg.filename)
    assert q.read_claimed(msg.filename) == msg
    q.acknowledge(msg.filename)
    assert read_message(str(q.processed / msg.filename)) == msg
