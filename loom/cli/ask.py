"""`loom ask`: a one-shot prompt to a model, with no agent to set up."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from loom.cli._common import OptionPairs, handle_errors, option_pairs


@handle_errors
def ask(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt; piped stdin follows it after a blank line.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="The model; default: LOOM_MODEL."),
    ] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="The system prompt.")] = None,
    option: OptionPairs = None,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema", help="The answer is JSON valid against this schema (FILE or JSON)."
        ),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option("--agent", "-a", help="Ask this agent, continuing its conversation."),
    ] = None,
) -> None:
    """Ask a model one question and stream its answer to stdout.

    The prompt is the argument, piped stdin, or both (the argument, a blank line, then
    stdin). Exit 0 when the answer came, 1 when the model call failed (the reason on
    stderr), 2 on a usage error, 130 on Ctrl-C. Each ask leaves its files in a folder of
    its own, agents/ask-<id>, like any agent's (loom trace, loom logs); loom gc deletes
    those after a day. With --agent NAME the agent's folder is used instead, and each
    ask continues its conversation.

    Example: loom ask "Name three prime numbers." --model openai/gpt-4o-mini

    Example: git diff | loom ask "Write a commit message for this diff." -s "Be brief."

    Example: loom ask "Ten words on rain." -m ollama/qwen3:8b -o temperature 0.9

    Example: echo "the app crashes" | loom ask -m echo --schema '{"type": "object"}'

    Example: loom ask "My name is Ada." --agent chat; loom ask "What is my name?" --agent chat
    """
    from loom.agent.ask import ask as ask_model
    from loom.agent.ask import model_for
    from loom.providers.json_schema import load_schema
    from loom.providers.options import parse_pairs

    code = ask_model(
        prompt,
        model=model_for(model, os.environ),
        agent=agent,
        system=system,
        options=parse_pairs(option_pairs(option)),
        schema=None if schema is None else load_schema(schema),
        stdin=sys.stdin,
        out=sys.stdout,
        err=sys.stderr,
    )
    if code:
        raise typer.Exit(code)
