"""`loom send NAME TEXT`, `loom agent ps` and `loom --help` skip typer (loom.cli.fast):
for every argv below, the fast path and the whole CLI print the same, exit the same and
leave the same files, and the fast path takes exactly the plain forms."""

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
    # The root's help, on stdout with exit 0; without arguments on stderr with exit 2.
    ([], True),
    (["--help"], True),
    (["-h"], True),
    (["--help", "--help"], False),
    (["-h", "--help"], False),
    (["--help", "send"], False),
    (["--", "--help"], False),
    (["--version"], False),
    (["--bogus"], False),
    (["help"], False),
    (["agent", "--help"], False),
    (["agent"], False),
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


# What the layout of the help depends on; the cases below set them themselves.
_HELP_ENV = ("COLUMNS", "PYTHONPATH", "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION")


def _run(
    mode: str,
    argv: list[str],
    home: Path,
    mark: Path,
    env: dict[str, str] | None = None,
    streams: str = "",
) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one path; `streams` is what the shell does to the
    command's stdout and stderr first (`>&-` closes stdout)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _HELP_ENV}
    full_env |= {"LOOM_HOME": str(home), "LOOM_FSYNC": "0", **(env or {})}
    command = [sys.executable, "-c", FULL, mode, str(mark), *argv]
    if streams:
        command = ["sh", "-c", f'exec "$@" {streams}', "sh", *command]
    proc = subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=60)
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


# id, argv, environment, the shell's redirections, whether the fast path takes it. click
# lays the help out for the terminal's columns (COLUMNS first, at most 80), and typer's
# completion options change when shellingham is installed; the fast path prints only the
# layout of 80 columns or more, with a choice of shells.
HELP_CASES: list[tuple[str, list[str], dict[str, str], str, bool]] = [
    ("80 columns", ["--help"], {"COLUMNS": "80"}, "", True),
    ("500 columns", ["-h"], {"COLUMNS": "500"}, "", True),
    ("COLUMNS=0 and no terminal", ["--help"], {"COLUMNS": "0"}, "", True),
    ("COLUMNS not a number", ["--help"], {"COLUMNS": "wide"}, "", True),
    ("79 columns", ["--help"], {"COLUMNS": "79"}, "", False),
    ("40 columns, no arguments", [], {"COLUMNS": "40"}, "", False),
    ("shellingham installed", ["--help"], {"PYTHONPATH": "SHELLINGHAM"}, "", False),
    (
        "shellingham installed, detection off",
        ["--help"],
        {"PYTHONPATH": "SHELLINGHAM", "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        "",
        True,
    ),
    ("stdout closed", ["--help"], {}, ">&-", True),
    ("stderr closed, no arguments", [], {}, "2>&-", True),
    ("stdout to a full disk", ["--help"], {}, ">/dev/full", True),
]


@pytest.mark.parametrize(
    ("argv", "env", "streams", "takes"),
    [case[1:] for case in HELP_CASES],
    ids=[case[0] for case in HELP_CASES],
)
def test_the_root_help_is_the_same_on_both_paths_wherever_it_is_shown(
    argv: list[str], env: dict[str, str], streams: str, takes: bool, tmp_path: Path
) -> None:
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "shellingham.py").write_text("")  # typer only looks for it, for the help
    env = {k: v.replace("SHELLINGHAM", str(fake)) for k, v in env.items()}
    home = tmp_path / "home"
    fast = _run("fast", argv, home, tmp_path / "fast.mark", env, streams)
    full = _run("full", argv, home, tmp_path / "full.mark", env, streams)
    assert fast == full
    assert (tmp_path / "fast.mark").read_text() == str(not takes)
    assert (tmp_path / "full.mark").read_text() == "True"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_the_root_help_ends_a_broken_pipe_as_the_whole_cli_does(
    stream: str, tmp_path: Path
) -> None:
    # `loom --help | head -1` with head gone: exit 1 and nothing more on either path.
    argv = ["--help"] if stream == "stdout" else []
    results = []
    for mode in ("fast", "full"):
        read, write = os.pipe()
        os.close(read)
        env = {k: v for k, v in os.environ.items() if k not in _HELP_ENV}
        proc = subprocess.run(
            [sys.executable, "-c", FULL, mode, str(tmp_path / f"{mode}.mark"), *argv],
            stdout=write if stream == "stdout" else subprocess.PIPE,
            stderr=write if stream == "stderr" else subprocess.PIPE,
            env=env,
            timeout=60,
        )
        os.close(write)
        results.append((proc.returncode, proc.stdout, proc.stderr))
    assert results[0] == results[1] == [(1, None, b""), (1, b"", None)][stream == "stderr"]
    assert (tmp_path / "fast.mark").read_text() == "False"


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
