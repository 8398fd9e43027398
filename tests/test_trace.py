"""`loom trace`: lineage back to the root and forward to every descendant (SPEC 2, 10)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run_loom, wait_for
from home_kit import answer, chain, fail, folder, put, route, stop_all  # noqa: F401

from loom.ops import trace
from loom.store.message import Message, new_message


def lines_of(ref: str, *extra: str) -> list[str]:
    done = run_loom("trace", ref, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_tree_shows_ancestors_the_target_and_descendants(loom_home: Path) -> None:
    root, first, second = chain(loom_home)
    lines = lines_of(first.filename)
    assert len(lines) == 3
    assert lines[0].startswith(root.filename) and "a: processed" in lines[0]
    assert lines[1].startswith(f"└─ {first.filename}  a  ")
    assert "out of a, b: processed" in lines[1] and lines[1].endswith("◀")
    assert lines[2].startswith(f"   └─ {second.filename}  b  ")
    assert "out of b, c: pending" in lines[2]


def test_a_bare_id_and_a_path_find_the_same_message(loom_home: Path) -> None:
    _, first, _ = chain(loom_home)
    by_name = lines_of(first.filename)
    assert lines_of(first.id) == by_name
    assert lines_of(f"agents/b/inbox/.processed/{first.filename}") == by_name


def test_json_lists_every_message_with_parent_hop_and_status(loom_home: Path) -> None:
    root, first, second = chain(loom_home)
    doc = json.loads(run_loom("trace", root.filename, "--json").stdout)
    assert doc["target"] == doc["root"] == root.filename
    files = [m["file"] for m in doc["messages"]]
    assert files == [root.filename, first.filename, second.filename]
    middle = doc["messages"][1]
    assert middle["parent"] == root.filename and middle["depth"] == 1
    assert middle["hop_ms"] == first.ts - root.ts and middle["from"] == "a"
    states = {(s["process"], s["state"]) for s in middle["status"]}
    assert states == {("a", "sent"), ("b", "processed")}


def test_fan_out_failures_and_in_progress_are_each_shown(loom_home: Path) -> None:
    root = new_message("cli", "go")
    put(loom_home, "hub", "pending", root)
    reply = answer(loom_home, root, "hub")
    for dest in ("ok", "broken", "busy"):
        route(loom_home, reply, dest)
    answer(loom_home, reply, "ok")
    fail(loom_home, reply, "broken", "model did not answer in 30 s")
    (folder(loom_home, "busy", "pending") / reply.filename).rename(
        folder(loom_home, "busy", "in progress") / reply.filename
    )
    lines = lines_of(root.filename)
    status = lines[1]
    assert "busy: in progress" in status and "ok: processed" in status
    assert "broken: failed (timeout: model did not answer in 30 s)" in status
    children = [line for line in lines[2:]]
    assert len(children) == 2  # ok's reply and broken's failure reply
    assert lines[2].startswith("   ├─ ") and lines[3].startswith("   └─ ")


def test_an_unknown_message_is_a_clear_error(loom_home: Path) -> None:
    chain(loom_home)
    missing = run_loom("trace", "01JNOSUCHMESSAGE")
    assert missing.returncode == 1
    assert missing.stderr.startswith("loom: no message '01JNOSUCHMESSAGE' under ")
    assert missing.stdout == ""
    malformed = run_loom("trace", "../../etc/passwd")
    assert malformed.returncode == 2 and "neither a message filename" in malformed.stderr


def test_a_garbage_collected_parent_shows_as_a_gap(loom_home: Path) -> None:
    gone = new_message("cli", "deleted long ago")
    orphan = gone.reply("a", "still here")
    put(loom_home, "a", "outbox", orphan)
    lines = lines_of(orphan.filename)
    assert lines[0].startswith(gone.filename)
    assert "missing: not found anywhere" in lines[0]
    assert lines[1].startswith(f"└─ {orphan.filename}") and lines[1].endswith("◀")


def test_cycles_and_a_thousand_segment_origin_do_not_hang(loom_home: Path) -> None:
    names = [new_message("x", str(i)).filename for i in range(1000)]
    deep = Message("DEEP1", "a", int(time.time() * 1000), "deep", origin="/".join(names))
    put(loom_home, "a", "outbox", deep)
    started = time.monotonic()
    lines = lines_of(deep.filename)
    assert time.monotonic() - started < 10
    assert len(lines) == 1001 and lines[-1].endswith("◀")
    # An origin naming the message itself, and two messages naming each other.
    ts = int(time.time() * 1000)
    a = Message("CYCA", "a", ts, "a", origin=f"{ts}-CYCB.msg")
    b = Message("CYCB", "b", ts, "b", origin=f"{ts}-CYCA.msg/{ts}-CYCA.msg")
    put(loom_home, "a", "outbox", a)
    put(loom_home, "b", "outbox", b)
    route(loom_home, a, "b")
    route(loom_home, b, "a")
    for ref in (a.filename, b.filename):
        shown = "\n".join(lines_of(ref))
        assert "cycle:" in shown


def test_unreadable_files_on_the_path_are_reported_not_fatal(loom_home: Path) -> None:
    root, first, second = chain(loom_home)
    # b's copy of `first` is fine, a's outbox copy is damaged: the good copy is used.
    (loom_home / "agents" / "a" / "outbox" / first.filename).write_text("{not json")
    junk = folder(loom_home, "b", "outbox") / f"{second.ts}-JUNK.msg"
    junk.write_text("{also not json")
    quarantined = new_message("cli", "x")
    put(loom_home, "d", "unreadable", quarantined).write_text("garbage")
    note = folder(loom_home, "d", "unreadable") / f"{quarantined.filename}.error.json"
    note.write_text(json.dumps({"reason": "not valid JSON"}))
    lines = lines_of(first.filename)
    # The junk file cannot be a child (it does not name `first`): only a's copy counts.
    assert len(lines) == 4 and lines[-1] == "(1 unreadable file skipped)"
    shown = lines_of(quarantined.filename)
    assert "unreadable:" in shown[0] and "d: unreadable (not valid JSON)" in shown[0]


def test_library_trace_reads_only_what_can_match(loom_home: Path) -> None:
    root, first, second = chain(loom_home)
    # Older files in a consumer's outbox cannot be children: their content is never read.
    old = Message("OLD", "b", root.ts - 60_000, "older", origin=first.filename)
    put(loom_home, "b", "outbox", old)
    lineage = trace.trace(loom_home, first.filename)
    assert [n.file for n in lineage.nodes] == [root.filename, first.filename, second.filename]


@pytest.mark.usefixtures("stop_all")
def test_a_real_weave_is_traced_through_a_pipe_drop(loom_home: Path) -> None:
    for name in ("researcher", "editor"):
        assert run_loom("agent", "start", name, "--model", "echo", "-d").returncode == 0
    spec = '- filter: "length(@) > `5`"\n'
    assert run_loom("pipe", "create", "longish", input=spec).returncode == 0
    assert run_loom("route", "researcher", "--pipe", "longish", "--to", "editor").returncode == 0
    for body in ("a long enough message", "hi"):
        assert run_loom("send", "researcher", body).returncode == 0
    outbox = loom_home / "agents" / "editor" / "outbox"
    wait_for(lambda: len(list(outbox.glob("*.msg"))) == 1, 20, "the long message's answer")
    instance = loom_home / "pipes" / "longish~researcher→editor" / "inbox" / ".processed"
    wait_for(lambda: len(list(instance.glob("*.msg"))) == 2, 20, "both through the pipe")
    roots = sorted(p.name for p in (loom_home / "agents/researcher/inbox/.processed").iterdir())
    kept = lines_of(roots[0])
    assert len(kept) == 4 and "editor: processed" in kept[2] and kept[3].endswith("out of editor")
    dropped = lines_of(roots[1])
    assert len(dropped) == 2
    assert "longish~researcher→editor: dropped (by operator 1:filter)" in dropped[1]
