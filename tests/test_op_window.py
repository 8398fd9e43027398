"""`window`: batches of N, or fewer when the timeout passes; `by` keeps one window per key."""

from __future__ import annotations

import json
import re
import time

import pytest

from loom.errors import ConfigError
from loom.pipeline import Pipeline, parse_definition
from loom.store.message import Message, new_message


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def pipeline(definition: str, clock: Clock | None = None) -> Pipeline:
    return Pipeline(parse_definition(definition, name="t"), instance="t", clock=clock or Clock())


def batch(msg: Message) -> list[str]:
    return [m["body"] for m in json.loads(msg.body)]


def test_a_full_window_emits_the_envelopes_of_its_messages() -> None:
    pipe = pipeline("- window: {size: 3}")
    inputs = [new_message("cli", f"m{i}") for i in range(4)]
    assert pipe.push(inputs[0]) == [] and pipe.push(inputs[1]) == []
    [out] = pipe.push(inputs[2])
    envelopes = json.loads(out.body)
    assert [e["id"] for e in envelopes] == [m.id for m in inputs[:3]]
    assert set(envelopes[0]) == {"v", "id", "from", "ts", "body"}
    # The message that closed the window gives the batch its lineage.
    assert out.origin == inputs[2].filename
    assert pipe.push(inputs[3]) == []
    [rest] = pipe.flush()
    assert batch(rest) == ["m3"]


def test_the_timeout_emits_fewer() -> None:
    clock = Clock()
    pipe = pipeline("- window: {size: 10, timeout: 30s}", clock)
    first, second = new_message("cli", "a"), new_message("cli", "b")
    pipe.push(first)
    clock.now += 10
    pipe.push(second)
    assert pipe.poll() == []
    deadline = pipe.next_deadline()
    assert deadline is not None and 19 < deadline - time.monotonic() <= 20
    clock.now += 20
    [out] = pipe.poll()
    assert batch(out) == ["a", "b"]
    assert out.origin == second.filename
    assert pipe.next_deadline() is None


def test_a_message_after_a_missed_timeout_closes_the_old_window_first() -> None:
    clock = Clock()
    pipe = pipeline("- window: {size: 10, timeout: 1s}", clock)
    pipe.push(new_message("cli", "old"))
    clock.now += 5
    [out] = pipe.push(new_message("cli", "new"))
    assert batch(out) == ["old"]
    assert [batch(m) for m in pipe.flush()] == [["new"]]


def test_by_keeps_one_window_per_key() -> None:
    pipe = pipeline('- window: {size: 2, by: "user"}')
    outs = []
    for user, n in [("a", 1), ("b", 2), ("a", 3), ("b", 4)]:
        outs += pipe.push(new_message("cli", json.dumps({"user": user, "n": n})))
    assert [[json.loads(b)["n"] for b in batch(o)] for o in outs] == [[1, 3], [2, 4]]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ("{size: 0}", "key 'size': must be a positive integer, got 0"),
        ("{size: -1}", "key 'size'"),
        ("{size: two}", "key 'size'"),
        ("{size: 2, timeout: -5s}", "key 'timeout': must not be negative"),
        ("{size: 2, timeout: 0s}", "key 'timeout': must be longer than zero"),
        ("{size: 2, timeout: soon}", "key 'timeout': must be a duration"),
        ("{size: 2, by: 'a.'}", "key 'by': bad JMESPath"),
        ("{timeout: 5s}", "key 'size': is required"),
    ],
)
def test_bad_windows_are_config_errors(args: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_definition(f"- map: '@'\n- window: {args}", name="t", source="w.yml")
    assert re.match(r"w.yml:2:\d+: pipe 't', operator 2 \(window\)", str(info.value))
    assert problem in str(info.value)
