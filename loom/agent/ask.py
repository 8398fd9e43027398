"""`loom ask`: one prompt to a model with no agent to set up, answered by the foreground
runner of `agent start --stdin` in an agent folder of its own (docs/cli.md#loom-ask).

Each ask without `--agent` gets a fresh folder `agents/ask-<id>`, so `loom trace` and
the logs work as for any agent; `loom gc` deletes those once they are old.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, TextIO

from loom import settings
from loom.agent import agents, foreground
from loom.errors import UsageError
from loom.store import home as homes
from loom.store.ids import new_id

ASK_PREFIX = "ask-"
# The file that marks a folder as one ask's, left when the ask ends: `loom gc` deletes
# only marked folders, never an agent a user named `ask-...` themselves.
ASK_MARK = "ask"


def ephemeral_name() -> str:
    """A new `ask-<id>` agent name; the id is a ULID, so the names sort by time."""
    return ASK_PREFIX + new_id()[1].lower()


def model_for(model: str | None, env: Mapping[str, str]) -> str:
    """`--model`, else LOOM_MODEL; a usage error saying how to give one when neither is."""
    chosen = model or settings.MODEL.get(env).strip()
    if not chosen:
        raise UsageError(
            "no model given: pass --model (e.g. --model openai/gpt-4o-mini) "
            "or set LOOM_MODEL for a default"
        )
    return chosen


def ask(
    prompt: str | None,
    *,
    model: str,
    agent: str | None,
    system: str | None,
    options: dict[str, Any],
    schema: dict[str, Any] | None,
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
) -> int:
    """Answer `prompt` (then a blank line and stdin, when stdin is a pipe or a file) and
    return the exit code, as `loom agent start --stdin` does. With `agent`, that agent's
    folder is used and the answer continues its conversation."""
    piped = foreground.stdin_is_data(stdin)
    if prompt is None and not piped:
        raise UsageError("nothing to ask: give a PROMPT, or pipe text in")
    name = agent or ephemeral_name()
    spec = agents.AgentSpec(
        name,
        model,
        system=system,
        restart="never",
        tools=[],
        options=options,
        schema=schema,
    )
    source = stdin if piped else io.TextIOWrapper(io.BytesIO(b""))
    try:
        return foreground.run(
            spec,
            once=True,
            prompt=prompt,
            envelope=False,
            stdin=source,
            out=out,
            err=err,
            resume=agent is not None,
        )
    finally:
        proc = homes.agent(name)
        if agent is None and proc.path.is_dir():
            proc.write(ASK_MARK, "")
