"""The engine contract `loom pipe run` and the queued process build on."""

from __future__ import annotations

import io
import json
import time

import pytest

from loom.pipeline import OperatorError, Pipeline, parse_definition
from loom.store.message import new_message


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def pipeline(text: str, **kw: object) -> Pipeline:
    return Pipeline(parse_definition(text, name="p"), instance="inst", **kw)  # type: ignore[arg-type]


def test_outputs_are_new_messages_from_the_instance_with_extended_origin() -> None:
    parent = new_message("writer", "x")
    msg = parent.reply("researcher", '{"a": 1}', error=True)
    [out] = pipeline('- map: "a"').push(msg)
    assert out.id != msg.id and out.sender == "inst" and out.body == "1"
    assert out.origin == f"{parent.filename}/{msg.filename}"
    assert out.error is True and out.to is None


def test_the_filename_given_is_the_origin_segment() -> None:
    msg = new_message("cli", "x")
    [out] = pipeline('- map: "@"').push(msg, "renamed.msg")
    assert out.origin == "renamed.msg"


def test_an_incoming_to_does_not_leak_into_the_outputs() -> None:
    msg = new_message("cli", "x", to=("somewhere",))
    [out] = pipeline("- map: \"envelope('to')\"").push(msg)
    assert out.to is None and out.body == "null"
    [routed] = pipeline("- fanout: [a]").push(msg)
    assert routed.to == ("a",)


def test_operators_see_the_input_envelope_at_every_step() -> None:
    pipe = pipeline("- map: '{n: n}'\n- split: '[n, n]'\n- map: \"join(' ', [sender(), @])\"")
    assert [m.body for m in pipe.push(new_message("alice", '{"n": "x"}'))] == ["alice x"] * 2


def test_an_operator_error_names_the_operator_and_leaves_the_pipe_usable() -> None:
    pipe = pipeline("- map: '@'\n- map: 'abs(@)'")
    with pytest.raises(OperatorError) as info:
        pipe.push(new_message("cli", '"text"'))
    assert info.value.label == "2:map" and info.value.number == 2 and info.value.kind == "map"
    assert [m.body for m in pipe.push(new_message("cli", "-3"))] == ["3"]
    assert pipe.errors == {"2:map": 1}


def test_timed_outputs_run_through_the_rest_of_the_chain() -> None:
    clock = Clock()
    pipe = pipeline("- window: {size: 5, timeout: 1s}\n- map: 'length(@)'", clock=clock)
    pipe.push(new_message("cli", "a"))
    pipe.push(new_message("cli", "b"))
    deadline = pipe.next_deadline()
    assert deadline is not None and abs(deadline - (time.monotonic() + 1)) < 0.5
    assert pipe.poll() == []
    assert [m.body for m in pipe.poll(now=time.monotonic() + 2)] == ["2"]
    assert pipe.next_deadline() is None


def test_flush_cascades_through_every_holding_operator() -> None:
    pipe = pipeline("- window: {size: 10}\n- map: 'length(@)'\n- window: {size: 10}")
    for body in "abc":
        pipe.push(new_message("cli", body))
    [out] = pipe.flush()
    assert [e["body"] for e in json.loads(out.body)] == ["3"]


def test_a_failure_while_flushing_is_reported_and_skipped() -> None:
    stderr = io.StringIO()
    pipe = pipeline("- window: {size: 10}\n- map: 'abs([0].body)'", stderr=stderr)
    pipe.push(new_message("cli", "text"))
    assert pipe.flush() == []
    assert [f.label for f in pipe.failures] == ["2:map"]
    assert "operator 2:map failed" in stderr.getvalue()


def test_close_stops_streaming_commands() -> None:
    pipe = pipeline("- command: cat\n  stream: true")
    assert [m.body for m in pipe.push(new_message("cli", "x"))] == ["x"]
    child = pipe.operators[0]._child  # type: ignore[attr-defined]
    pipe.close()
    assert child is not None and not child.running


def test_entering_leaves_a_plain_message_as_it_is() -> None:
    pipe = pipeline('- map: "@"')
    msg = new_message("cli", "x")
    assert pipe.enter(msg) is msg and pipe.enter(msg, msg.filename) is msg
    renamed = pipe.enter(msg, "other.msg")
    assert renamed is not msg and renamed.extra == {"_loom_file": "other.msg"}
    routed = pipe.enter(new_message("cli", "x", to=("a",)))
    assert routed.to is None
    assert pipe.enter(renamed).extra == {}  # a stale arrival name is not kept


def test_push_unfinished_gives_the_bodies_and_destinations_push_gives() -> None:
    pipe = pipeline("- split: '[*]'\n- route: [{when: \"@ > `1`\", to: big}, {to: small}]")
    msg = new_message("cli", "[1, 2, 3]")
    unfinished = pipe.push_unfinished(msg)
    finished = pipe.push(msg)
    assert [(m.body, m.to) for m in unfinished] == [(m.body, m.to) for m in finished]
    assert all(m.id == msg.id for m in unfinished)  # still the input's envelope
