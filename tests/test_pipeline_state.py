"""Contract for every stateful operator: state survives a restart exactly (SPEC 6).

Each scenario runs once in one pipeline, and once with a new Pipeline (same state
folder) before every input and every clock tick; both runs must give the same outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loom.errors import LoomError
from loom.pipeline import Pipeline, parse_definition
from loom.store.message import Message, new_message

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
    folder = tmp_path / "two" / f"1-{kind}"
    if kind == "dedupe":  # journalled: one line per commit, snapshot every so often
        lines = (folder / "journal.ndjson").read_text().splitlines()
        assert [json.loads(ln)["seq"] for ln in lines] == list(range(1, len(lines) + 1))
    else:
        state = json.loads((folder / "state.json").read_text())
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


def test_dedupe_journal_compacts_and_a_torn_line_is_ignored(tmp_path: Path) -> None:
    from loom.pipeline import state as state_module

    defn = parse_definition([{"dedupe": {"key": "n"}}], name="t")
    old = state_module.COMPACT_EVERY
    state_module.COMPACT_EVERY = 5
    try:
        pipe = Pipeline(defn, instance="t", state_dir=tmp_path)
        outs = [pipe.push(new_message("cli", json.dumps({"n": i % 8}))) for i in range(20)]
        pipe.close()
    finally:
        state_module.COMPACT_EVERY = old
    assert sum(len(o) for o in outs) == 8
    folder = tmp_path / "1-dedupe"
    assert json.loads((folder / "state.json").read_text())["seq"] >= 5
    assert len((folder / "journal.ndjson").read_text().splitlines()) <= 5
    with open(folder / "journal.ndjson", "a") as f:
        f.write('{"seq": 999, "delta": ["9"')  # a crash in the middle of an append
    again = Pipeline(defn, instance="t", state_dir=tmp_path)
    assert again.push(new_message("cli", json.dumps({"n": 3}))) == []
    assert len(again.push(new_message("cli", json.dumps({"n": 9})))) == 1
    again.close()
