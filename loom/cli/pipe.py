"""`loom pipe ...`: run and manage pipes."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run and manage pipes.", no_args_is_help=True)
