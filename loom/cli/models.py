"""`loom models`: the models each configured provider offers."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from loom.cli._common import handle_errors


@handle_errors
def models(
    provider: Annotated[
        str | None, typer.Option("--provider", "-p", help="Only this provider, e.g. ollama.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array for scripts.")] = False,
) -> None:
    """List the models each configured provider offers, one `provider/model` a line.

    Each provider's server is asked (Ollama GET /api/tags, the others GET /v1/models)
    with a 3 s timeout. A provider without its key, or whose server does not answer,
    gets one line on stderr saying so. Exit 0 when any provider's server answered, else 1.

    Example: loom models

    Example: loom models --provider ollama

    Example: loom models --json | jq -r '.[] | select(.error == null) | .models[]'
    """
    from loom.providers.listing import offers

    found = offers(os.environ, provider)
    if as_json:
        print(json.dumps([o.to_json() for o in found]))
    else:
        for offer in found:
            for model in offer.models:
                print(model)
            if offer.problem is not None:
                print(f"loom: {offer.provider}: {offer.problem}", file=sys.stderr)
    # echo has no server: asked for alone, its list is an answer.
    alone = provider is not None and all(o.problem is None for o in found)
    if not (alone or any(o.answered for o in found)):
        raise typer.Exit(1)
