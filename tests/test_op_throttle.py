"""`throttle`: at most N per period; the rest wait in order and are released later."""

from __future__ import annotations

import json

from loom.pipeline import Pipeline, parse_definition
from loom.store.message import new_message


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def bodies(msgs: list) -> list[str]:
    return [m.body for m in msgs]


def test_excess_messages_wait_and_leave_in_order() -> None:
    clock = Clock()
    pipe = Pipeline(
        parse_definition("- throttle: {max: 2, per: 1s}", name="t"), instance="t", clock=clock
    )
    out = []
    for i in range(5):
        out += pipe.push(new_message("cli", str(i)))
    assert bodies(out) == ["0", "1"]
    assert pipe.poll() == []
    clock.now += 0.5
    # A newcomer never overtakes the backlog.
    assert pipe.push(new_message("cli", "5")) == []
    clock.now += 0.5
    assert bodies(pipe.poll()) == ["2", "3"]
    clock.now += 1
    assert bodies(pipe.poll()) == ["4", "5"]
    assert pipe.next_deadline() is None


def test_a_push_releases_what_is_due_before_itself() -> None:
    clock = Clock()
    pipe = Pipeline(
        parse_definition("- throttle: {max: 1, per: 10s}", name="t"), instance="t", clock=clock
    )
    pipe.push(new_message("cli", "a"))
    pipe.push(new_message("cli", "b"))
    clock.now += 10
    assert bodies(pipe.push(new_message("cli", "c"))) == ["b"]


def test_the_end_of_input_keeps_the_rate() -> None:
    clock = Clock()
    definition = parse_definition("- throttle: {max: 1, per: 10s}\n- window: {size: 5}", name="t")
    pipe = Pipeline(definition, instance="t", clock=clock)
    for body in "abc":
        pipe.push(new_message("cli", body))
    # The window flushes what it has; the backlog waits for its turn...
    assert [json.loads(m.body)[0]["body"] for m in pipe.flush()] == ["a"]
    assert pipe.poll() == []
    clock.now += 10
    # ...and, the input being over, the window after it passes each release on at once.
    assert [json.loads(m.body)[0]["body"] for m in pipe.poll()] == ["b"]
    clock.now += 10
    assert [json.loads(m.body)[0]["body"] for m in pipe.poll()] == ["c"]
    assert pipe.next_deadline() is None


def test_by_throttles_each_key_on_its_own() -> None:
    clock = Clock()
    pipe = Pipeline(
        parse_definition("- throttle: {max: 1, per: 1h, by: user}", name="t"),
        instance="t",
        clock=clock,
    )
    out = []
    for user in ["a", "a", "b", "b"]:
        out += pipe.push(new_message("cli", json.dumps({"user": user})))
    assert [json.loads(b)["user"] for b in bodies(out)] == ["a", "b"]
    clock.now += 3600
    assert len(pipe.poll()) == 2
