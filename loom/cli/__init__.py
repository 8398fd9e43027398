"""The `loom` command. Each command group lives in its own module and only parses,
delegates to the library, and renders (STYLE 3); loom.cli.root holds the table of them."""

from __future__ import annotations

import io
import sys

from loom.errors import LoomError, describe_os_error

# Not typing's: `loom --help` does not import typing (loom.cli.fast). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def main(fast_path: bool = True) -> None:
    """Console-script entry point: a failed file operation or a setting that was read
    outside a command's own handler is still one line on stderr, never a traceback.
    The plainest forms of `send` and `agent ps`, and `loom --help`, skip typer
    (loom.cli.fast) unless `fast_path` is off."""
    # A reply may hold a lone surrogate (JSON can escape one); print it as that escape
    # rather than fail on it, as loom's files do (atomic.utf8).
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        from loom.cli import fast

        code = fast.run(sys.argv[1:]) if fast_path else None
        if code is not None:
            sys.exit(code)
        from loom.cli.root import app

        app(prog_name="loom")
    except LoomError as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        print(f"loom: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)


def __getattr__(name: str) -> Any:
    # `from loom.cli import app` still works; `loom.cli` itself does not import typer.
    if name == "app":
        from loom.cli.root import app

        return app
    raise AttributeError(name)
