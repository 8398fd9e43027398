"""The example plugins in plugins/ (docs/tools.md): each is found and described without a
problem, answers the protocol, and refuses what it should."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from plugin_kit import EXAMPLES, ROOT

from loom.tools.discovery import scan
from loom.tools.settings import ToolSettings


def call(plugin: str, arguments: Any, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run `PLUGIN invoke` as loom does; return the result line as an object, and all lines."""
    path = EXAMPLES / plugin / plugin if (EXAMPLES / plugin).is_dir() else EXAMPLES / plugin
    done = subprocess.run(
        [str(path), "invoke"],
        input=(arguments if isinstance(arguments, str) else json.dumps(arguments)) + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return lines[-1], lines


def test_every_example_is_a_usable_plugin() -> None:
    plugins = scan(EXAMPLES, "global", dict(os.environ), ToolSettings(), cache_dir=None)
    assert [(p.name, p.problem) for p in plugins] == [
        ("calc", None),
        ("clock", None),
        ("read-file", None),
    ]
    for plugin in plugins:
        assert plugin.executable is not None
        assert plugin.executable.read_text().startswith("#!")


def test_the_examples_ship_in_the_wheel() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"plugins" = "loom/_catalog/plugins"' in pyproject


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("(2 + 3) * 4 ^ 2", 80),
        ("7 / 2", 3.5),
        ("-3 + 10 % 4", -1),
        ("sqrt(16) + int(2.9)", 6),
        ("0.1 * 3", 0.3),
    ],
)
def test_calc_evaluates_arithmetic(expression: str, value: float) -> None:
    result, _ = call("calc", {"expression": expression})
    assert result["status"] == "ok"
    assert result["result"] == pytest.approx(value)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"expression": "1 / 0"}, "no finite value"),
        ({"expression": "2 +* 3"}, "cannot evaluate 2 +* 3"),
        ({"expression": 'system("touch pwned")'}, "may hold only numbers"),
        ({"expression": "system(1)"}, "may hold only numbers"),
        ({"expression": "x = 3"}, "may hold only numbers"),
        ({"expression": "1; 2"}, "may hold only numbers"),
        ({"expression": 12}, "may hold only numbers"),
        ({}, 'give the expression as a string, e.g. {"expression": "1 + 2"}'),
    ],
)
def test_calc_refuses_what_is_not_arithmetic(
    arguments: dict[str, str], error: str, tmp_path: Path
) -> None:
    result, _ = call("calc", arguments, cwd=tmp_path)
    assert result["status"] == "error" and error in result["error"]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def readable(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "notes.md").write_text("# Notes\n\nhello\n")
    (tmp_path / "secret.txt").write_text("do not read me\n")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    return root


def test_read_file_reads_below_its_root_with_progress(readable: Path) -> None:
    result, lines = call("read-file", {"path": "docs/notes.md"}, {"READ_FILE_ROOT": str(readable)})
    assert result == {"status": "ok", "result": "# Notes\n\nhello\n"}
    assert lines[0] == {"type": "progress", "message": "reading docs/notes.md"}


def test_read_file_defaults_to_the_working_folder(readable: Path) -> None:
    result, _ = call("read-file", {"path": "docs/notes.md"}, cwd=readable)
    assert result["status"] == "ok"


@pytest.mark.parametrize(
    "path", ["../secret.txt", "docs/../../secret.txt", "escape", "/etc/hostname"]
)
def test_read_file_refuses_paths_outside_its_root(readable: Path, path: str) -> None:
    result, _ = call("read-file", {"path": path}, {"READ_FILE_ROOT": str(readable)})
    assert result == {"status": "error", "error": f"refused: {path} is outside the readable folder"}


def test_read_file_cuts_big_files(readable: Path) -> None:
    (readable / "big.txt").write_text("x" * 150_000)
    result, _ = call("read-file", {"path": "big.txt"}, {"READ_FILE_ROOT": str(readable)})
    assert result["result"] == "x" * 100_000 + "\n[... cut after 100000 bytes]"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [({"path": "docs/missing.md"}, "there is no file docs/missing.md"), ({}, "give the path")],
)
def test_read_file_reports_bad_requests(readable: Path, arguments: dict, error: str) -> None:
    result, _ = call("read-file", arguments, {"READ_FILE_ROOT": str(readable)})
    assert result["status"] == "error" and error in result["error"]


def test_clock_tells_utc_time_by_default() -> None:
    result, _ = call("clock", {})
    assert result["status"] == "ok"
    told = result["result"]
    assert abs(told["unix"] - time.time()) < 5
    assert told["time"].endswith("Z")
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(told["unix"]))
    assert told["time"] == expected
    assert told["weekday"] == time.strftime("%A", time.gmtime(told["unix"]))


def test_clock_applies_an_offset() -> None:
    result, _ = call("clock", {"utc_offset": "-08:00"})
    told = result["result"]
    expected = time.strftime("%Y-%m-%dT%H:%M:%S-08:00", time.gmtime(told["unix"] - 8 * 3600))
    assert told["time"] == expected


@pytest.mark.parametrize("offset", ["+25:00", "eight", "+5"])
def test_clock_refuses_a_bad_offset(offset: str) -> None:
    result, _ = call("clock", {"utc_offset": offset})
    assert result == {"status": "error", "error": "utc_offset must look like +05:30 or -08:00"}
