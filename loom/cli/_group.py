"""How `loom` and its command groups present themselves: commands listed by name, each
with its whole first sentence, and usage errors as one `loom: ...` line (SPEC 10)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import click
import typer.core

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
        if rows:
            width = max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                # One line per command even past the terminal's width: a description cut
                # or wrapped in the middle reads worse than a long line.
                for name, text in rows:
                    formatter.write(f"{' ' * formatter.current_indent}{name:<{width}}  {text}\n")

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
