"""How `loom` and its command groups present themselves: commands listed by name, each
with its whole first sentence, and usage errors as one `loom: ...` line (SPEC 10)."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import Any, ClassVar

import click
import typer.core

from loom.cli.commands import Entry

# A sentence ends at a full stop followed by a space; "e.g." and "i.e." do not end one.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(\s|$)")


def first_sentence(text: str) -> str:
    """The first sentence of a help text's first paragraph, whole and on one line."""
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    end = _SENTENCE_END.search(paragraph)
    return paragraph[: end.start() + 1] if end else paragraph


def usage_sentence(exc: click.UsageError) -> str:
    """A click usage error as loom's one sentence: `no such option: --x (see loom agent
    start --help)`."""
    if isinstance(exc, click.NoSuchOption):
        message = f"no such option: {exc.option_name}"
        if exc.possibilities:
            message += f"; did you mean {', '.join(sorted(exc.possibilities))}?"
    else:
        message = exc.format_message().strip().rstrip(".")
        message = message[:1].lower() + message[1:]
        message = message.replace(". Did you mean", "; did you mean")
    path = exc.ctx.command_path if exc.ctx is not None else "loom"
    return f"{message} (see {path} --help)"


def write_commands(formatter: click.HelpFormatter, rows: list[tuple[str, str]]) -> None:
    """The Commands section of a group's help: a name and its line per row."""
    if rows:
        width = max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            # One line per command even past the terminal's width: a description cut or
            # wrapped in the middle reads worse than a long line.
            for name, text in rows:
                formatter.write(f"{' ' * formatter.current_indent}{name:<{width}}  {text}\n")


class LoomGroup(typer.core.TyperGroup):
    """A typer group whose help lists commands sorted, with untruncated descriptions, and
    whose usage errors are one line on stderr with exit 2."""

    _resolved: tuple[str, click.Command] | None = None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and command is not None:
            self._resolved = (name, command)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # click's parser raises some errors (an option without its value) with no
            # context: give them the command's, so the message can name its --help.
            if exc.ctx is None and self._resolved is not None:
                name, command = self._resolved
                exc.ctx = click.Context(command, info_name=name, parent=ctx)
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(super().list_commands(ctx))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            rows.append((name, command.short_help or first_sentence(command.help or "")))
        write_commands(formatter, rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # the help itself, as `--help` would print it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            print(f"loom: {usage_sentence(exc)}", file=sys.stderr, flush=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            print("loom: aborted", file=sys.stderr, flush=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class LazyGroup(LoomGroup):
    """A LoomGroup whose commands come from `table`: listed without importing them, and
    each imported and turned into a click command only when it is asked for."""

    table: ClassVar[Mapping[str, Entry]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.table})

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # typer suggests from the commands built so far; suggest from the table.
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if self.suggest_commands and matches and "Did you mean" not in exc.message:
                names = ", ".join(f"{m!r}" for m in matches)
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {names}?"
            raise

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.table:
            self.commands[cmd_name] = build(cmd_name, self.table[cmd_name])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands or name not in self.table:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.short_help or first_sentence(command.help or "")))
            else:
                rows.append((name, self.table[name].help))
        write_commands(formatter, rows)


def build(name: str, entry: Entry) -> click.Command:
    """The click command of a table entry, made as typer's add_typer and command would
    have made it in the whole tree (same class, markup mode and exception settings)."""
    import typer.main
    import typer.models

    target = getattr(importlib.import_module(f"loom.cli.{entry.module}"), entry.attr)
    if isinstance(target, typer.Typer):
        info = typer.models.TyperInfo(target, name=name, cls=LoomGroup)
        return typer.main.get_group_from_info(
            info, pretty_exceptions_short=True, rich_markup_mode=None, suggest_commands=True
        )
    cls = None
    if entry.paired:
        from loom.cli._common import PairedOptions

        cls = PairedOptions
    command = typer.models.CommandInfo(
        name=name, cls=cls, callback=target, short_help=entry.help if entry.short else None
    )
    return typer.main.get_command_from_info(
        command, pretty_exceptions_short=True, rich_markup_mode=None
    )
