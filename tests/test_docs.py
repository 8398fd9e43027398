"""Docs that run (STYLE 13): every ```console block in README.md and docs/ is executed.

A block is a shell session: `$ command` lines (a heredoc or a trailing backslash
continues a command), each followed by its expected output. A line `...` in the
expected output matches any number of lines; `...` inside a line matches any text.
A command must exit 0 unless its output ends with a line `[exit N]`. The blocks of one
file run in order in one fresh LOOM_HOME and working folder, so later blocks can use
what earlier ones made.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from loom.store.home import pid_is_loom

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
MARK = "\x1e"
HEREDOC = re.compile(r"(?<!<)<<(?!<)-?\s*'?\"?(\w+)'?\"?")


@dataclass
class Step:
    command: str
    expected: list[str]
    line: int


def parse_block(text: str, first_line: int) -> list[Step]:
    steps: list[Step] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if steps:
                steps[-1].expected.append(line)
            i += 1
            continue
        start = i
        command = [line[2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i][2:] if lines[i].startswith("> ") else lines[i])
        heredoc = HEREDOC.search(command[-1]) if "<<" in command[-1] else None
        if heredoc:
            end = heredoc.group(1)
            while i + 1 < len(lines):
                i += 1
                command.append(lines[i])
                if lines[i].strip() == end:
                    break
        steps.append(Step("\n".join(command), [], first_line + start))
        i += 1
    return steps


def matches(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return (
        bool(actual) and line_matches(expected[0], actual[0]) and matches(expected[1:], actual[1:])
    )


def line_matches(expected: str, actual: str) -> bool:
    """Equal but for trailing space; `...` inside a line matches any text."""
    expected, actual = expected.rstrip(), actual.rstrip()
    if "..." not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def blocks(path: Path) -> list[list[Step]]:
    text = path.read_text("utf-8")
    found = []
    for m in FENCE.finditer(text):
        first = text[: m.start(1)].count("\n") + 1
        found.append(parse_block(m.group(1), first))
    return found


DOC_FILES = [p for p in DOCS if blocks(p)]


def run_block(block: list[Step], cwd: Path, env: dict[str, str]) -> list[tuple[str, int]]:
    """Run a block's commands in one shell (variables carry over); output and exit code each."""
    script = []
    for index, step in enumerate(block):
        script.append(f"{step.command}\nprintf '\\n{MARK}%d %d{MARK}\\n' {index} $?")
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    results: list[tuple[str, int]] = []
    rest = proc.stdout
    for index, step in enumerate(block):
        m = re.search(f"\n{MARK}{index} (\\d+){MARK}\n", rest)
        assert m, f"{step.line}: $ {step.command}\ndid not finish\nstderr:\n{proc.stderr}"
        results.append((rest[: m.start()], int(m.group(1))))
        rest = rest[m.end() :]
    return results


@pytest.mark.parametrize("path", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_console_examples_run_as_documented(path: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["LOOM_ROOT"] = str(ROOT)
    env["COLUMNS"] = "100"
    try:
        for block in blocks(path):
            for step, (stdout, returncode) in zip(block, run_block(block, work, env), strict=True):
                actual = stdout.splitlines()
                expected = list(step.expected)
                while expected and not expected[-1].strip():
                    expected.pop()
                code = 0
                if expected and (m := re.fullmatch(r"\[exit (\d+)\]", expected[-1].strip())):
                    code = int(m.group(1))
                    expected.pop()
                where = f"{path.name}:{step.line}: $ {step.command}\n"
                assert returncode == code, f"{where}exited {returncode}, expected {code}"
                assert matches(expected, actual), (
                    f"{where}expected:\n" + "\n".join(expected) + "\nactual:\n" + stdout
                )
    finally:
        _stop_everything(env["LOOM_HOME"])
        shutil.rmtree(work, ignore_errors=True)


def _stop_everything(home: str) -> None:
    """A doc may start detached agents; end them with the test."""
    root = Path(home)
    for pidfile in [root / "supervisor.pid", *root.glob("*/*/pid")]:
        try:
            raw = pidfile.read_text().strip()
        except FileNotFoundError:
            continue
        if raw.isdigit() and pid_is_loom(int(raw)):
            os.kill(int(raw), signal.SIGKILL)
