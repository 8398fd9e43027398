"""Every command has --help with an example, and a section in docs/cli.md (SPEC 10)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from conftest import run_loom

from loom.cli._group import build, first_sentence
from loom.cli.commands import COMMANDS
from loom.cli.root import app

ROOT = Path(__file__).resolve().parent.parent


def commands(group: typer.Typer = app, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    if group is app:
        for name, entry in COMMANDS.items():
            target = getattr(importlib.import_module(f"loom.cli.{entry.module}"), entry.attr)
            if isinstance(target, typer.Typer):
                found += commands(target, (name,))
            else:
                found.append((name,))
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


def test_the_command_table_lists_each_command_as_its_own_help_would() -> None:
    # `loom --help` lists the table without importing the commands: its lines must be
    # what the commands themselves say (their short help, or their first sentence).
    for name, entry in COMMANDS.items():
        command = build(name, entry)
        assert command.name == name
        assert entry.help == (command.short_help or first_sentence(command.help or "")), name
        assert not command.hidden


def test_the_root_help_is_the_same_with_every_command_built() -> None:
    lazy = typer.main.get_command(app)
    assert isinstance(lazy, click.Group)
    with click.Context(lazy, info_name="loom") as ctx:
        listed = lazy.get_help(ctx)
        for name in lazy.list_commands(ctx):
            lazy.get_command(ctx, name)
        assert sorted(lazy.commands) == sorted(COMMANDS)
        assert lazy.get_help(ctx) == listed


def test_only_the_command_run_is_imported() -> None:
    code = (
        "import sys\nfrom loom.cli import main\nsys.argv = ['loom', 'send', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('loom.cli.')), file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    loaded = r.stderr.strip().splitlines()[-1]
    assert "loom.cli.send" in loaded
    for other in ("agent", "weave", "pipe", "lifecycle", "route", "supervisor"):
        assert f"'loom.cli.{other}'" not in loaded, loaded


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
