"""`loom send NAME TEXT` and `loom agent ps` skip typer (loom.cli.fast): for every argv
below, the fast path and the whole CLI print the same, exit the same and leave the same
files, and the fast path takes exactly the plain forms."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_loom

# A message file's name and the id and time inside it differ from run to run.
_VOLATILE = re.compile(r"\d{13}-[0-9A-Z]{26}|[0-9A-Z]{26}|\d{13}")

# argv, and whether the fast path takes it.
CASES: list[tuple[list[str], bool]] = [
    (["send", "a", "hello"], True),
    (["send", "a", "héllo wörld ☃"], True),
    (["send", "a", "two\nlines"], True),
    (["send", "a", ""], True),
    (["send", "a", "   "], True),
    (["send", "b", "to the queued one"], True),
    (["send", "nosuch", "hi"], True),
    (["send", "aa", "hi"], True),
    (["send", "A", "hi"], True),
    (["send", "", "hi"], True),
    (["send", "a.b", "hi"], True),
    (["send", "a", "-x"], False),
    (["send", "a", "--", "-x"], False),
    (["send", "a", "hi", "extra"], False),
    (["send", "a", "--help"], False),
    (["send", "a", "hi", "-h"], False),
    (["send", "a"], False),
    (["send", "--create", "c", "hi"], False),
    (["send", "c", "hi", "--create"], False),
    (["send", "a", "hi", "--from", "me"], False),
    (["send", "a", "hi", "--bogus"], False),
    (["agent", "ps"], True),
    (["agent", "ps", "--all"], True),
    (["agent", "ps", "-a"], True),
    (["agent", "ps", "--json"], True),
    (["agent", "ps", "-a", "--json"], True),
    (["agent", "ps", "--json", "--all"], True),
    (["agent", "ps", "--all", "-a"], False),
    (["agent", "ps", "--all", "--all"], False),
    (["agent", "ps", "-p", "nosuch"], False),
    (["agent", "ps", "--project", "Bad!"], False),
    (["agent", "ps", "--bogus"], False),
    (["agent", "ps", "--help"], False),
    (["agent", "ps", "extra"], False),
]

FULL = (
    "import sys\n"
    "from loom.cli import main\n"
    "mode, mark_path = sys.argv.pop(1), sys.argv.pop(1)\n"
    "try:\n"
    "    main(fast_path=mode == 'fast')\n"
    "finally:\n"
    "    with open(mark_path, 'w') as mark:\n"
    "        mark.write(str('click' in sys.modules))\n"
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with agent `a` run once, `b` only queued for, and a stopped `e`."""
    home = tmp_path_factory.mktemp("template") / "home"
    env = {"LOOM_HOME": str(home), "LOOM_FSYNC": "0"}
    for name in ("a", "e"):
        r = run_loom("agent", "start", name, "--model", "echo", "--stdin", input="hi", env=env)
        assert r.returncode == 0, r.stderr
    assert run_loom("send", "b", "--create", "first", env=env).returncode == 0
    return home


def _state(home: Path) -> list[tuple[str, str]]:
    files = []
    for path in sorted(home.rglob("*")):
        rel = _VOLATILE.sub("X", str(path.relative_to(home)))
        text = "" if path.is_dir() or path.name == "lock" else path.read_text("utf-8", "replace")
        files.append((rel, _VOLATILE.sub("X", text)))
    return sorted(files)


def _run(mode: str, argv: list[str], home: Path, mark: Path) -> tuple[int, str, str]:
    env = {**os.environ, "LOOM_HOME": str(home), "LOOM_FSYNC": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", FULL, mode, str(mark), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    clean = [_VOLATILE.sub("X", s.replace(str(home), "HOME")) for s in (proc.stdout, proc.stderr)]
    return proc.returncode, clean[0], clean[1]


@pytest.mark.parametrize(("argv", "takes"), CASES, ids=[repr(a) for a, _ in CASES])
def test_the_fast_path_does_what_the_whole_cli_does(
    argv: list[str], takes: bool, template: Path, tmp_path: Path
) -> None:
    fast_home, full_home = tmp_path / "fast" / "home", tmp_path / "full" / "home"
    shutil.copytree(template, fast_home, symlinks=True)
    shutil.copytree(template, full_home, symlinks=True)
    fast = _run("fast", argv, fast_home, tmp_path / "fast.mark")
    full = _run("full", argv, full_home, tmp_path / "full.mark")
    assert fast == full
    assert _state(fast_home) == _state(full_home)
    # The fast path ran without click exactly for the forms it takes.
    assert (tmp_path / "fast.mark").read_text() == str(not takes)
    assert (tmp_path / "full.mark").read_text() == "True"


def test_the_fast_path_sends_and_lists_through_the_real_command(template: Path) -> None:
    env = {"LOOM_HOME": str(template), "LOOM_FSYNC": "0"}
    r = run_loom("send", "a", "hello", env=env)
    assert r.returncode == 0 and r.stderr == ""
    sent = Path(r.stdout.strip())
    assert (
        sent.parent == template / "agents" / "a" / "inbox" and '"body":"hello"' in sent.read_text()
    )
    r = run_loom("agent", "ps", "--all", env=env)
    assert r.returncode == 0
    assert [line.split()[:2] for line in r.stdout.splitlines()[1:]] == [
        ["a", "stopped"],
        ["e", "stopped"],
    ]
