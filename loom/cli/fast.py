"""`loom send NAME TEXT`, `loom agent ps` and `loom --help`, the commands scripts, shell
loops and people run most, without typer or click: importing those takes longer than
the command's own work.

`run` takes exactly the plain forms below and nothing else; any other argv (an option it
does not know, a command's `--help`, `--`, an argument starting with `-`, shell
completion) goes to the whole CLI. The work itself is the same functions the typer
commands call, and its failures end the same way as under `handle_errors` and
LoomGroup.main: `loom: ...` on stderr and the same exit code; the help is click's, byte
for byte (tests/test_cli_fast.py compares both paths, case by case).
"""

from __future__ import annotations

import os
import sys

from loom.cli.commands import COMMANDS, ROOT_HELP
from loom.errors import LoomError

# typing, json and pathlib are not imported for `loom --help`: together they took about a
# third of its time. mypy takes this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import TextIO

# The flags `agent ps` takes here; each at most once, in any order.
_PS_FLAGS = {"--all": "all", "-a": "all", "--json": "json"}


class Failed(LoomError):
    """A command's failure as a sentence and the exit code it ends with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_target(name: str, create: bool) -> None:
    """Refuse a NAME that is malformed, or that no agent or pipe has (without `create`)."""
    from loom import api
    from loom.names import validate_process_name

    validate_process_name(name)
    try:
        api.target(name, create=create)
    except api.NoSuchProcess as exc:
        raise Failed(exc.sentence("--create queues it for one that starts later"), 1) from None


def send_text(name: str, body: str) -> Path:
    """`loom send NAME TEXT`: queue TEXT from `cli` for NAME; the new message's path."""
    from loom import api
    from loom.store.message import new_message

    check_target(name, create=False)
    if not body.strip():
        raise Failed("the message is empty; nothing sent", 2)
    message = new_message("cli", body)
    try:
        queue = api.send_all(name, [message], create=False, progress=None)
    except api.PartlySent as exc:
        raise Failed(partly_sent(exc, [1]), exc.exit_code) from None
    return queue.inbox / message.filename


def partly_sent(exc: LoomError, numbers: list[int]) -> str:
    """The sentence for a send that stopped part way; `numbers` are the input line
    numbers of the messages, in order."""
    from loom import api
    from loom.errors import describe_os_error

    assert isinstance(exc, api.PartlySent)
    cause = describe_os_error(exc.cause) if isinstance(exc.cause, OSError) else str(exc.cause)
    if isinstance(exc.cause, KeyboardInterrupt):
        cause = "interrupted"
    if exc.sent == 0:
        return f"{cause}; nothing sent"
    return (
        f"{cause}; sent {exc.sent} of {exc.total} messages (input lines 1-"
        f"{numbers[exc.sent - 1]}), not the ones from line {numbers[exc.sent]} on"
    )


def ps(include_all: bool, as_json: bool, project: str | None) -> str:
    """What `loom agent ps` prints: the table, or one JSON array."""
    import json

    from loom.cli._text import columns
    from loom.names import validate_name
    from loom.store import processes

    if project is not None:
        validate_name(project, "project name")
    found = processes.rows(include_all=include_all, project=project)
    if as_json:
        return json.dumps([r.to_json() for r in found], indent=None)
    table = [("NAME", "STATUS", "MODEL", "IN FLIGHT", "RESTARTS", "UPTIME", "PROJECT")]
    for r in found:
        uptime = processes.format_uptime(r.uptime_s)
        status = (
            f"{r.status}, throttled until {r.throttled_until}" if r.throttled_until else r.status
        )
        flight = f"{r.in_flight}/{r.concurrency}"
        table.append((r.name, status, r.model, flight, str(r.restarts), uptime, r.project or "-"))
    return columns(table)


# The root's options as click lays them out in its width of 78 columns (a terminal of 80
# columns or more, or none); typer adds the two completion options.
_ROOT_OPTIONS = """\
Options:
  --version                       Print loom's version and exit.
  --install-completion [bash|zsh|fish|powershell|pwsh]
                                  Install completion for the specified shell.
  --show-completion [bash|zsh|fish|powershell|pwsh]
                                  Show completion for the specified shell, to
                                  copy it or customize the installation.
  -h, --help                      Show this message and exit.
"""


def top_help() -> str | None:
    """What `loom --help` prints before its last newline, as typer and click print it;
    None where they would lay it out otherwise: in a terminal narrower than 80 columns,
    or with shellingham installed."""
    if _columns() < 80 or _detects_shell():
        return None
    paragraphs = "\n\n".join(f"  {p}" for p in ROOT_HELP.split("\n\n"))
    width = max(len(name) for name in COMMANDS)
    # As _group.write_commands lists them: sorted, one line each, never wrapped.
    rows = "\n".join(f"  {name:<{width}}  {COMMANDS[name].help}" for name in sorted(COMMANDS))
    usage = "Usage: loom [OPTIONS] COMMAND [ARGS]...\n"
    return f"{usage}\n{paragraphs}\n\n{_ROOT_OPTIONS}\nCommands:\n{rows}"


def _columns() -> int:
    # The columns click's HelpFormatter starts from: shutil.get_terminal_size's, which
    # reads COLUMNS first, then asks the terminal on stdout, else takes 80. shutil itself
    # costs more to import than the rest of `loom --help`.
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (ValueError, OSError):
            columns = 0
    return columns or 80


def _detects_shell() -> bool:
    # With shellingham installed, typer's completion options take no shell name (it
    # detects the shell), unless this switch of typer's own tests is set. typer asks
    # importlib.util.find_spec; this asks the same finders without importing importlib.
    if os.environ.get("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"):
        return False
    return "shellingham" in sys.modules or any(
        finder.find_spec("shellingham", None) is not None
        for finder in sys.meta_path
        if hasattr(finder, "find_spec")
    )


def _show(text: str, stream: TextIO | None, exit_code: int) -> int:
    # As click.echo writes the help (nothing on a closed stream) and as click's main ends a
    # broken pipe: exit 1 and nothing more.
    if stream is None:
        return exit_code
    try:
        stream.write(f"{text}\n")
        stream.flush()
    except BrokenPipeError:
        # What is still buffered would fail again at exit, with a message on stderr.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        return 1
    return exit_code


def _plain(arg: str) -> bool:
    return not arg.startswith("-")


def _ps_flags(args: list[str]) -> dict[str, bool] | None:
    if len(set(args)) != len(args) or not all(a in _PS_FLAGS for a in args):
        return None
    chosen = {_PS_FLAGS[a] for a in args}
    if len(chosen) != len(args):  # --all and -a both
        return None
    return {"all": "all" in chosen, "json": "json" in chosen}


def run(argv: list[str]) -> int | None:
    """Run argv if it is one of the plain forms and return the exit code; None (having
    done nothing) for anything else."""
    if any(k.startswith("_LOOM_COMPLETE") for k in os.environ):
        return None
    if argv in ([], ["--help"], ["-h"]):
        text = top_help()
        if text is None:
            return None
        # Without arguments the help is a usage error: on stderr, exit 2 (no_args_is_help).
        return _show(text, sys.stdout, 0) if argv else _show(text, sys.stderr, 2)
    if len(argv) == 3 and argv[0] == "send" and _plain(argv[1]) and _plain(argv[2]):
        return _guarded(lambda: print(send_text(argv[1], argv[2])))
    if argv[:2] == ["agent", "ps"]:
        flags = _ps_flags(argv[2:])
        if flags is not None:
            return _guarded(lambda: print(ps(flags["all"], flags["json"], None)))
    return None


def _guarded(work: Callable[[], None]) -> int:
    # As handle_errors (_common.py) and click's main under LoomGroup.main end a command.
    try:
        work()
    except LoomError as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except EOFError:
        print(file=sys.stderr)
        print("loom: aborted", file=sys.stderr, flush=True)
        return 1
    return 0
