"""`loom demo`: the triage weave from the package alone, offline, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_loom
from home_kit import stop_all  # noqa: F401

from loom.store.home import pid_is_loom

pytestmark = pytest.mark.usefixtures("stop_all")
ROOT = Path(__file__).resolve().parent.parent
DIGESTS = [
    '[notifier] {"title":"disk full on db1","priority":"urgent","labels":[]}',
    '[archivist] {"title":"typo in the README","priority":"normal","labels":[]}',
]


def no_process_left(home: Path) -> bool:
    pids = [home / "supervisor.pid", *home.glob("*/*/pid")]
    raw = [p.read_text().strip() for p in pids if p.is_file()]
    return not any(r.isdigit() and pid_is_loom(int(r)) for r in raw)


def test_demo_runs_the_triage_weave_and_stops_what_it_started(loom_home: Path) -> None:
    r = run_loom("demo", env={"TRIAGE_MODEL": "openai/gpt-4o"})  # offline all the same
    assert r.returncode == 0, r.stderr
    assert f"LOOM_HOME={loom_home}" in r.stdout
    for line in DIGESTS:
        assert line in r.stdout, r.stdout
    assert len(list((loom_home / "agents" / "digest" / "outbox").glob("*.msg"))) == 3
    assert (loom_home / "agents" / "digest" / "model").read_text().strip() == "echo"
    assert (loom_home / "agents" / "digest" / "status").read_text().strip() == "stopped"
    assert no_process_left(loom_home)


def test_demo_without_loom_home_uses_a_temporary_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOOM_HOME"}
    env["TMPDIR"] = str(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "loom", "demo"], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    (home,) = [
        Path(line.split("LOOM_HOME=")[1]) for line in r.stdout.splitlines() if "HOME=" in line
    ]
    assert home.is_relative_to(tmp_path) and (home / "agents" / "digest").is_dir()
    assert no_process_left(home)


def test_demo_help_has_an_example() -> None:
    r = run_loom("demo", "--help")
    assert r.returncode == 0 and "Example: loom demo" in r.stdout, r.stderr


def test_the_wheel_alone_runs_the_demo(tmp_path: Path, loom_home: Path) -> None:
    """Builds the wheel and installs it in a fresh venv: 15 to 40 s, the slowest here."""
    wheels, venv = tmp_path / "whl", tmp_path / "venv"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)]
    try:
        subprocess.run(build, check=True, capture_output=True, timeout=60)
        # No pip of its own (ensurepip costs seconds): this test's pip installs into it.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        (wheel,) = wheels.glob("*.whl")
        python = str(venv / "bin" / "python")
        install = [sys.executable, "-m", "pip", "--python", python, "install", "-q", str(wheel)]
        subprocess.run(install, check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot build or install the wheel here: {exc}")
    env = {**os.environ, "LOOM_HOME": str(loom_home)}
    r = subprocess.run(
        [str(venv / "bin" / "loom"), "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert DIGESTS[0] in r.stdout and "_catalog/examples/triage/loom.yml" in r.stdout
    assert no_process_left(loom_home)
