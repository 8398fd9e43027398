"""Structured output in each wire format's own field (docs/models.md, "Structured output").

OpenAI-compatible APIs take `response_format: {type: json_schema, ...}`, Ollama takes the
schema as `format`, and Anthropic has no such field: the answer is a forced call of one
tool whose input schema is the schema, and the call's input is the answer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from loom.providers.base import Completion, Request
from loom.providers.json_schema import is_strict

# The tool Anthropic is made to call; its input is the answer.
REPLY_TOOL = "structured_reply"
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's `response_format`. `strict` only when the schema meets strict mode's rules:
    OpenAI refuses `strict: true` for any other schema, and loom validates the answer anyway."""
    title = schema.get("title")
    name = title if isinstance(title, str) and _NAME.fullmatch(title) else "reply"
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": dict(schema), "strict": is_strict(schema)},
    }


def anthropic_fields(request: Request) -> dict[str, Any]:
    """The reply tool and `tool_choice` for a Messages API body. With other tools offered
    the model may call them first (`any`: some tool, every round); alone it must answer."""
    if request.schema is None:
        return {}
    tool = {
        "name": REPLY_TOOL,
        "description": "Give your answer: its input is the whole reply.",
        "input_schema": dict(request.schema),
    }
    choice = {"type": "any"} if request.tools else {"type": "tool", "name": REPLY_TOOL}
    return {"tool": tool, "tool_choice": choice}


def answer_from_reply_tool(completion: Completion) -> Completion:
    """The call of the reply tool as the answer's text; the model's other calls, made in
    the same turn, are dropped: it has answered."""
    for call in completion.tool_calls:
        if call.name == REPLY_TOOL:
            return dataclasses.replace(completion, text=call.arguments, tool_calls=())
    return completion
