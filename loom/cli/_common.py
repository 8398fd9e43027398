"""What every command shares: turning LoomError into one line on stderr and an exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
import typer.core

from loom.errors import LoomError

P = ParamSpec("P")
R = TypeVar("R")


def die(message: str, code: int = 1) -> typer.Exit:
    """Print `loom: message` on stderr and return the Exit to raise."""
    print(f"loom: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Map LoomError to `loom: <sentence>` on stderr with its exit code (SPEC 10)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except LoomError as exc:
            raise die(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error.
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper


# Options the log commands share (`loom agent logs`, `loom logs`).
FollowOption = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")]
JsonLogsOption = Annotated[bool, typer.Option("--json", help="Raw NDJSON log records.")]
LevelOption = Annotated[
    str | None,
    typer.Option("--level", "-l", help="Only this level and above: debug, info, warning, error."),
]
# `-o KEY VALUE`, repeatable: model options (`loom agent start`, `loom ask`). Typer has
# no list of pairs, so the command's class (`PairedOptions`) gives it its two values.
OptionPairs = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY VALUE",
        help="A model option, e.g. -o temperature 0.2 (repeatable).",
    ),
]


class PairedOptions(typer.core.TyperCommand):
    """A command whose `-o/--option` takes two values, KEY VALUE, as llm's does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.name == "option":
                param.nargs = 2


def option_pairs(raw: Sequence[Any] | None) -> list[tuple[str, str]]:
    """The `-o KEY VALUE` values of a `PairedOptions` command as pairs."""
    return [(str(key), str(value)) for key, value in raw or []]
