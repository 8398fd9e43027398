"""Delivery along routes: conditions, fan-out/in, routing nodes, exactly-once, back-pressure."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from loom.pipeline import parse_definition, save_definition
from loom.routing import Edge, Router, add_route, ensure_instance, remove_route
from loom.store.home import ProcessDir
from loom.store.message import Message, new_message
from loom.store.queue import list_messages, write_message


def agents(home: Path, *names: str) -> dict[str, ProcessDir]:
    return {name: ProcessDir(home, "agents", name).create() for name in names}


def define_pipe(home: Path, name: str) -> None:
    save_definition(parse_definition([{"map": "@"}], name=name), home)


def emit(proc: ProcessDir, body: str, **fields: object) -> Message:
    msg = new_message(proc.name, body, **fields)  # type: ignore[arg-type]
    write_message(proc.outbox, msg)
    return msg


def inbox(proc: ProcessDir) -> list[str]:
    return list_messages(proc.inbox)


def router_events(home: Path, event: str) -> list[dict[str, object]]:
    records = []
    for path in sorted((home / "router" / "logs").glob("*.ndjson")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["event"] == event]


def test_a_direct_edge_copies_the_file_unchanged(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    router = Router(loom_home)
    msg = emit(p["a"], "hello", origin="1-X.msg/2-Y.msg")
    failure = emit(p["a"], "the model is down", error=True, origin=msg.filename)
    assert router.pump() == 2
    assert inbox(p["b"]) == sorted([msg.filename, failure.filename])
    for m in (msg, failure):
        copied = (p["b"].inbox / m.filename).read_bytes()
        assert copied == (p["a"].outbox / m.filename).read_bytes()
    assert router.pump() == 0
    routed = router_events(loom_home, "routed")
    assert {r["msg"] for r in routed} == {msg.filename, failure.filename}
    assert routed[0]["edge"] == "a → b" and routed[0]["to"] == "b"


def test_when_conditions_filter_json_and_text_bodies(loom_home: Path) -> None:
    p = agents(loom_home, "monitor", "notifier", "pager", "healthy")
    add_route(loom_home, Edge("monitor", "notifier", when="severity >= `3`"))
    add_route(loom_home, Edge("monitor", "pager", when="starts_with(@, 'URGENT')"))
    add_route(loom_home, Edge("monitor", "healthy", when="!is_error()"))
    router = Router(loom_home)
    high = emit(p["monitor"], '{"severity": 5}')
    low = emit(p["monitor"], '{"severity": 1}')
    urgent = emit(p["monitor"], "URGENT: disk full")
    quiet = emit(p["monitor"], "all quiet")
    emit(p["monitor"], "URGENT: the model failed", error=True)
    router.pump()
    assert inbox(p["notifier"]) == [high.filename]
    assert len(inbox(p["pager"])) == 2 and urgent.filename in inbox(p["pager"])
    assert inbox(p["healthy"]) == sorted(m.filename for m in (high, low, urgent, quiet))


def test_fan_out_and_fan_in(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b", "c", "d")
    for src, dst in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]:
        add_route(loom_home, Edge(src, dst))
    router = Router(loom_home)
    m = emit(p["a"], "x")
    router.pump()
    assert inbox(p["b"]) == inbox(p["c"]) == [m.filename]
    from_b, from_c = emit(p["b"], "from b"), emit(p["c"], "from c")
    router.pump()
    assert inbox(p["d"]) == sorted([from_b.filename, from_c.filename])


def test_a_piped_edge_runs_through_its_instance(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    define_pipe(loom_home, "filt")
    add_route(loom_home, Edge("a", "b", pipe="filt"))
    router = Router(loom_home)
    m = emit(p["a"], "in")
    router.pump()
    instance = ProcessDir(loom_home, "pipes", "filt~a→b")
    assert inbox(instance) == [m.filename]
    assert inbox(p["b"]) == []
    out = emit(instance, "out", origin=m.filename)
    router.pump()
    assert inbox(p["b"]) == [out.filename]
    assert instance.outbox in router.watched() and p["a"].outbox in router.watched()


def test_a_routing_node_delivers_to_each_name_in_to(loom_home: Path) -> None:
    p = agents(loom_home, "intake", "notifier", "archivist")
    define_pipe(loom_home, "triage")
    add_route(loom_home, Edge("intake", pipe="triage"))
    router = Router(loom_home)
    m = emit(p["intake"], '{"priority": "urgent"}')
    router.pump()
    node = ProcessDir(loom_home, "pipes", "triage")
    assert inbox(node) == [m.filename]
    both = emit(node, "both", to=("notifier", "archivist", "notifier"))
    no_to = emit(node, "nowhere")
    ghost = emit(node, "partly", to=("ghost", "archivist"))
    router.pump()
    assert inbox(p["notifier"]) == [both.filename]
    assert inbox(p["archivist"]) == sorted([both.filename, ghost.filename])
    events = ("message has no 'to'", "unknown destination in 'to'")
    errors = {(r["msg"], r["event"]) for e in events for r in router_events(loom_home, e)}
    assert errors == {
        (no_to.filename, "message has no 'to'"),
        (ghost.filename, "unknown destination in 'to'"),
    }
    [row] = router.stats()
    assert row["errors"] == 2 and row["forwarded"] == 1 and row["pipe"] == "triage"


def test_no_second_delivery_after_a_crash_between_write_and_log(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    m1, m2, m3 = emit(p["a"], "one"), emit(p["a"], "two"), emit(p["a"], "three")
    # The state a router leaves when killed after its rename into the inbox and before
    # its log line: m1 in the inbox, m2 already taken by b, m3 already processed by b.
    for m, folder in [(m1, ""), (m2, ".in-progress"), (m3, ".processed")]:
        shutil.copy(p["a"].outbox / m.filename, p["b"].inbox / folder / m.filename)
    router = Router(loom_home)
    assert router.pump() == 0
    assert inbox(p["b"]) == [m1.filename]
    assert len(router_events(loom_home, "already delivered")) == 3
    log = loom_home / "router" / "delivered" / "a→b.log"
    assert sorted(log.read_text().split()) == sorted([m1.filename, m2.filename, m3.filename])
    # b finishes m1; neither this router nor the next one sends it again.
    os.rename(p["b"].inbox / m1.filename, p["b"].inbox / ".processed" / m1.filename)
    assert router.pump() == 0
    assert Router(loom_home).pump() == 0
    assert inbox(p["b"]) == []


def test_a_restarted_router_delivers_what_arrived_while_it_was_down(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    first = emit(p["a"], "before")
    Router(loom_home).pump()
    os.rename(p["b"].inbox / first.filename, p["b"].inbox / ".processed" / first.filename)
    later = emit(p["a"], "while down")
    assert Router(loom_home).pump() == 1
    assert inbox(p["b"]) == [later.filename]


def test_a_new_edge_does_not_replay_history_but_takes_late_arrivals(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    history = [emit(p["a"], f"old {i}") for i in range(3)]
    router = Router(loom_home)
    router.pump()
    add_route(loom_home, Edge("a", "b"))
    assert router.reload() is True
    fresh = emit(p["a"], "new")
    # Written after the edge but stamped long ago (a slow producer): it is new here.
    late = Message(id="01LATEARRIVAL0000000000000", sender="a", ts=1000, body="late")
    write_message(p["a"].outbox, late)
    router.pump()
    assert inbox(p["b"]) == sorted([fresh.filename, late.filename])
    assert not set(inbox(p["b"])) & {m.filename for m in history}
    assert Router(loom_home).pump() == 0  # a new router agrees about the history


def test_filenames_arriving_out_of_order_are_all_delivered(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    router = Router(loom_home)
    newer = new_message("a", "newer")
    older = Message(id="01OLDER0000000000000000000", sender="a", ts=newer.ts - 5000, body="old")
    write_message(p["a"].outbox, newer)
    router.pump()
    write_message(p["a"].outbox, older)
    router.pump()
    assert inbox(p["b"]) == sorted([older.filename, newer.filename])


def test_back_pressure_holds_at_the_limit_and_resumes_when_drained(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b", limit=2))
    router = Router(loom_home)
    sent = [emit(p["a"], f"m{i}").filename for i in range(5)]
    assert router.pump() == 2
    assert inbox(p["b"]) == sent[:2]
    [row] = router.stats()
    assert row["held"] is True and row["pending"] == 3 and row["forwarded"] == 2
    assert p["b"].inbox / ".in-progress" in router.watched()
    assert router.pump() == 0
    for name in inbox(p["b"]):
        os.rename(p["b"].inbox / name, p["b"].inbox / ".processed" / name)
    assert router.pump() == 2
    assert inbox(p["b"]) == sent[2:4]
    for name in inbox(p["b"]):
        os.rename(p["b"].inbox / name, p["b"].inbox / ".processed" / name)
    assert router.pump() == 1
    [row] = router.stats()
    assert row["held"] is False and row["pending"] == 0 and row["forwarded"] == 5


def test_a_broken_routes_file_keeps_the_previous_table(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    router = Router(loom_home)
    assert router.reload() is True
    assert router.reload() is False
    (loom_home / "routes.json").write_text('[{"from": "a", "to"')
    assert router.reload() is False
    assert router.reload() is False
    [rejected] = router_events(loom_home, "routes rejected; keeping the previous routes")
    assert "not valid JSON" in str(rejected["error"])
    m = emit(p["a"], "still flowing")
    router.pump()
    assert inbox(p["b"]) == [m.filename]


def test_an_unreadable_outbox_file_is_skipped_with_an_error(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    router = Router(loom_home)
    bad = p["a"].outbox / "1-BAD.msg"
    bad.write_text('{"v": 1, "id"')
    router.pump()
    assert inbox(p["b"]) == []  # young: maybe still being written, so it waits
    os.utime(bad, (1, 1))
    good = emit(p["a"], "fine")
    router.pump()
    assert inbox(p["b"]) == [good.filename]
    [error] = router_events(loom_home, "unreadable message not routed")
    assert error["msg"] == "1-BAD.msg"


def test_removing_and_adding_an_edge_again_starts_it_from_now(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    router = Router(loom_home)
    router.pump()
    remove_route(loom_home, "a", "b")
    router.reload()
    gap = emit(p["a"], "while unrouted")
    router.pump()
    add_route(loom_home, Edge("a", "b"))
    router.reload()
    after = emit(p["a"], "routed again")
    router.pump()
    assert inbox(p["b"]) == [after.filename]
    assert gap.filename not in inbox(p["b"])


def test_stats_are_written_for_loom_routes(loom_home: Path) -> None:
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b", when="@ != 'skip'"))
    router = Router(loom_home)
    emit(p["a"], "go")
    emit(p["a"], "skip")
    router.pump()
    router.write_stats()
    document = json.loads((loom_home / "router" / "stats.json").read_text())
    [row] = document["routes"]
    assert row["from"] == "a" and row["to"] == "b" and row["when"] == "@ != 'skip'"
    assert row["forwarded"] == 1 and row["held"] is False and row["last_activity"].endswith("Z")


def test_a_settled_outbox_routes_each_message_once_and_then_the_new_one(
    loom_home: Path,
) -> None:
    # The router skips listing an outbox whose folder has not changed since it settled;
    # a message that arrives later must still be seen, and none routed twice.
    p = agents(loom_home, "a", "b")
    add_route(loom_home, Edge("a", "b"))
    router = Router(loom_home)
    first = emit(p["a"], "first")
    os.utime(p["a"].outbox, (1000, 1000))
    assert router.pump() == 1
    assert router.pump() == 0
    second = emit(p["a"], "second")
    assert router.pump() == 1
    assert router.pump() == 0
    assert inbox(p["b"]) == sorted([first.filename, second.filename])


@pytest.mark.parametrize("limit", [1, 3])
def test_a_routing_node_respects_back_pressure_per_destination(loom_home: Path, limit: int) -> None:
    p = agents(loom_home, "intake", "x")
    define_pipe(loom_home, "node")
    add_route(loom_home, Edge("intake", pipe="node", limit=limit))
    router = Router(loom_home)
    node = ensure_instance(loom_home, "node", "node")
    for i in range(4):
        emit(node, f"n{i}", to=("x",))
    router.pump()
    assert len(inbox(p["x"])) == limit
    assert router.stats()[0]["held"] is True
