"""The structured log (SPEC 3): one NDJSON line per event, in the file of its UTC day."""

from __future__ import annotations

import json
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

from conftest import run_loom, spawn_loom, wait_for

from loom.store.logs import Log


def test_each_line_goes_to_the_file_of_the_day_its_timestamp_names(tmp_path: Path) -> None:
    log = Log(tmp_path / "logs", "p")  # the folder is made on the first line
    log.info("one", msg="1-A.msg")
    log.warning("two", detail=None, outputs=["é"], path=tmp_path)
    [path] = (tmp_path / "logs").iterdir()
    first, second = (json.loads(line) for line in path.read_text("utf-8").splitlines())
    assert path.name == f"{first['ts'][:10]}.ndjson" and first["ts"].endswith("Z")
    assert first == {**first, "level": "info", "event": "one", "process": "p", "msg": "1-A.msg"}
    assert second["outputs"] == ["é"] and second["path"] == str(tmp_path)
    assert "detail" not in second  # fields given as None are left out


def test_a_line_is_stamped_with_the_utc_time_to_the_millisecond(tmp_path: Path) -> None:
    log = Log(tmp_path / "logs", "p")

    def clock() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    stamps = []
    for _ in range(3):  # a second line within the same second reads the clock again
        before = clock()
        log.info("tick")
        stamps.append((before, clock()))
    [path] = (tmp_path / "logs").iterdir()
    lines = [json.loads(line)["ts"] for line in path.read_text("utf-8").splitlines()]
    for ts, (before, after) in zip(lines, stamps, strict=True):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
        assert before <= ts <= after


def test_a_runner_recreates_its_log_and_conversation_file_when_they_are_deleted(
    loom_home: Path, reap: list
) -> None:
    """The runner keeps both files open between lines; deleted by hand, each comes back
    with the runner's next lines (within a second) instead of going to the lost file."""
    p = spawn_loom("agent", "start", "a", "--model", "echo")
    reap.append(p)
    agent = loom_home / "agents" / "a"
    wait_for(lambda: (agent / "status").exists(), what="runner start")
    assert run_loom("send", "a", "first").returncode == 0
    logs, talks = agent / "logs", agent / "conversations"
    wait_for(lambda: any(talks.glob("*.ndjson")), what="a conversation file")
    wait_for(lambda: "replied" in "".join(f.read_text() for f in logs.glob("*.ndjson")))
    for f in [*logs.glob("*.ndjson"), *talks.glob("*.ndjson")]:
        f.unlink()
    sent = 0

    def both_back() -> bool:
        nonlocal sent
        log_text = "".join(f.read_text() for f in logs.glob("*.ndjson"))
        talk_text = "".join(f.read_text() for f in talks.glob("*.ndjson"))
        if "replied" in log_text and "again" in talk_text:
            return True
        sent += 1
        assert run_loom("send", "a", f"again {sent}").returncode == 0
        return False

    wait_for(both_back, timeout=20, what="the log and the conversation file recreated")
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=10)
