"""The structured log (SPEC 3): one NDJSON line per event, in the file of its UTC day."""

from __future__ import annotations

import json
from pathlib import Path

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
