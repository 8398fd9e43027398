"""What every command shares: turning LoomError into one line on stderr and an exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

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
