"""Contract for every stateful operator: state survives a restart exactly (SPEC 6).

Each scenario runs once in one pipeline, and once with a new Pipeline (same state
folder) before every input and every clock tick; both runs must give the same outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loom.errors import LoomError
from loom.message import Message, new_message
from loom.pipeline import Pipeline, parse_definition

SCENARIOS = {
    "window": "- window: {size: 3, timeout: 10s, by: 'k'}",
    "buffer": "- buffer: {until: '[-1].end', timeout: 10s}",
    "dedupe": "- dedupe: {key: n, by: k}",
    "throttle": "- throttle: {max: 2, per: 10s, by: k}",
    "accumulate": "- accumulate: 'sum([@[0] || `0`, @[1].n])'",
}
# (seconds to advance the clock, body or None for a poll)
EVENTS: list[tuple[float, str | None]] = [
    (0, '{"k": "a", "n": 1}'),
    (1, '{"k": "b", "n": 2}'),
    (1, '{"k": "a", "n": 1}'),
    (1, '{"k": "a", "n": 3}'),
    (0, '{"k": "a", "n": 4, "end": true}'),
    (1, '{"k": "a", "n": 5}'),
    (12, None),
    (0, '{"k": "b", "n": 2}'),
    (15, None),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


INPUTS = [new_message("cli", body) for _, body in EVENTS if body is not None]


def replay(definition: str, state_dir: Path, *, restart: bool) -> list[str]:
    defn = parse_definition(definition, name="t")
    clock = Clock()
    feed = iter(INPUTS)
    pipe = Pipeline(defn, instance="t", state_dir=state_dir, clock=clock)
    seen: list[Message] = []
    for advance, body in EVENTS:
        clock.now += advance
        if restart:
            pipe.close()
            pipe = Pipeline(defn, instance="t", state_dir=state_dir, clock=clock)
        seen += pipe.poll() if body is None else pipe.push(next(feed))
    pipe.close()
    return [m.body for m in seen]


@pytest.mark.parametrize("kind", sorted(SCENARIOS))
def test_state_survives_a_restart_exactly(kind: str, tmp_path: Path) -> None:
    straight = replay(SCENARIOS[kind], tmp_path / "one", restart=False)
    restarted = replay(SCENARIOS[kind], tmp_path / "two", restart=True)
    assert straight, "the scenario should produce output"
    assert restarted == straight
    state = json.loads((tmp_path / "two" / f"1-{kind}" / "state.json").read_text())
    assert state["operator"] == kind


def test_in_memory_nothing_is_written(tmp_path: Path) -> None:
    replay(SCENARIOS["window"], tmp_path / "mem", restart=False)
    pipe = Pipeline(parse_definition(SCENARIOS["dedupe"], name="t"), instance="t")
    pipe.push(new_message("cli", '{"n": 1}'))
    assert pipe.state_dir is None


def test_a_corrupt_state_file_stops_with_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "1-window"
    folder.mkdir()
    (folder / "state.json").write_text("{not json")
    with pytest.raises(LoomError, match="1-window/state.json: unreadable operator state"):
        Pipeline(parse_definition(SCENARIOS["window"], name="t"), instance="t", state_dir=tmp_path)
