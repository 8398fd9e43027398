"""Everything loom creates under $LOOM_HOME is private to the user (0700 folders, 0600
files), whatever the umask, and an open home is pointed out once per command."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_loom, wait_for

from loom.store.home import pid_is_loom

WEAVE = """\
version: 1
pipes:
  upper:
    - map: "{text: text, seen: `true`}"
    - tap: seen
agents:
  - name: source
    model: echo
    env: {REGION: eu}
  - name: sink
    model: echo
    system: Be brief.
    from: [{agent: source, pipe: upper}]
gc:
  retention: {processed: 0d, outbox: 0d, steps: 0d}
"""


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most shells have (022): what loom must not rely on."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def exposed(home: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if not path.is_symlink() and mode & 0o077:
                found.append(f"{path.relative_to(home)} {mode:04o}")
    return found


def test_nothing_in_the_home_is_open_to_others_after_a_weave_and_gc(
    tmp_path: Path, loom_home: Path, usual_umask: None
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "loom.yml").write_text(WEAVE)
    try:
        up = run_loom("up", "-d", cwd=work)
        assert up.returncode == 0, up.stderr
        assert run_loom("send", "source", json.dumps({"text": "hi"})).returncode == 0
        outbox = loom_home / "agents/sink/outbox"
        wait_for(lambda: list(outbox.glob("*.msg")), 30, "the reply at the end of the weave")
        assert run_loom("routes", cwd=work).returncode == 0
        fg = run_loom("agent", "start", "solo", "--model", "echo", "--stdin", input="x")
        assert fg.returncode == 0, fg.stderr
    finally:
        assert run_loom("down", cwd=work).returncode == 0
        sup = loom_home / "supervisor.pid"
        if sup.exists() and (raw := sup.read_text().strip()) and pid_is_loom(int(raw)):
            os.kill(int(raw), signal.SIGTERM)
    gc = run_loom("gc", cwd=work)
    assert gc.returncode == 0, gc.stderr
    assert list((loom_home / "archive").iterdir())  # gc did create files
    assert (loom_home / "supervisor.log").exists() and (loom_home / "router").is_dir()
    assert exposed(loom_home) == []


def test_an_open_home_is_left_as_it_is_and_pointed_out_once(loom_home: Path) -> None:
    loom_home.mkdir(mode=0o755)
    os.chmod(loom_home, 0o755)
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n"
    assert r.stderr == (
        f"loom: warning: {loom_home} is open to other users (mode 0755); "
        f"make it private: chmod 700 {loom_home}\n"
    )
    assert stat.S_IMODE(loom_home.stat().st_mode) == 0o755
    assert exposed(loom_home) == []


def test_a_private_home_gets_no_warning(loom_home: Path) -> None:
    loom_home.mkdir(mode=0o700)
    r = run_loom("agent", "start", "a", "--model", "echo", "--stdin", input="hello")
    assert r.returncode == 0 and r.stderr == ""
