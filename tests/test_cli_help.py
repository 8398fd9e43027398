"""Every command has --help with an example, and a section in docs/cli.md (SPEC 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from conftest import run_loom

from loom.cli import app

ROOT = Path(__file__).resolve().parent.parent


def commands(group: typer.Typer = app, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for info in group.registered_commands:
        if info.hidden:
            continue
        name = info.name or (info.callback.__name__ if info.callback else "")
        found.append((*prefix, name.replace("_", "-")))
    for sub in group.registered_groups:
        if sub.typer_instance is not None and sub.name:
            found += commands(sub.typer_instance, (*prefix, sub.name))
    return found


ALL = commands()


def test_the_command_set_is_complete() -> None:
    names = {" ".join(c) for c in ALL}
    for expected in [
        "agent start",
        "agent ps",
        "agent stop",
        "agent logs",
        "send",
        "pipe run",
        "pipe create",
        "pipes",
        "route",
        "unroute",
        "routes",
        "up",
        "down",
        "validate",
        "graph",
        "supervisor run",
        "test",
    ]:
        assert expected in names


@pytest.mark.parametrize("command", ALL, ids=[" ".join(c) for c in ALL])
def test_help_shows_an_example(command: tuple[str, ...]) -> None:
    r = run_loom(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert "Example:" in r.stdout, r.stdout
    assert f"loom {' '.join(command)}" in r.stdout.split("Example:", 1)[1]


def test_every_command_is_in_the_cli_reference() -> None:
    reference = (ROOT / "docs" / "cli.md").read_text()
    missing = [" ".join(c) for c in ALL if f"## `loom {' '.join(c)}" not in reference]
    assert missing == []


def test_usage_errors_exit_2_with_one_line() -> None:
    r = run_loom("agent", "start", "a")
    assert r.returncode == 2
    r = run_loom("no-such-command")
    assert r.returncode == 2
