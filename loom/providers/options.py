"""Model options (`-o temperature 0.2`, `options:` in loom.yml): the ones each provider
knows, how a value typed on the command line is read, and the check that names an
unknown one before any call (docs/models.md#model-options).

Every wire sends them in its own field: OpenAI-compatible and Anthropic bodies at the top
level, Ollama in its `options` object. `max_tokens` is loom's own name for the answer's
token limit on every wire; each provider sends it in the field its API reads.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from loom.errors import UsageError
from loom.providers import provider_of

TOKEN_LIMIT = "max_tokens"

_OPENAI = (
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "parallel_tool_calls",
    "presence_penalty",
    "reasoning_effort",
    "seed",
    "service_tier",
    "stop",
    "temperature",
    "top_logprobs",
    "top_p",
    "user",
)
# https://openrouter.ai/docs/api-reference/parameters: OpenAI's plus the sampling knobs
# of the open models it routes to, and its own routing fields.
_OPENROUTER = (
    *_OPENAI,
    "min_p",
    "models",
    "provider",
    "reasoning",
    "repetition_penalty",
    "top_a",
    "top_k",
    "transforms",
)
# https://docs.anthropic.com/en/api/messages
_ANTHROPIC = (
    "max_tokens",
    "metadata",
    "service_tier",
    "stop_sequences",
    "temperature",
    "thinking",
    "top_k",
    "top_p",
)
# https://github.com/ollama/ollama/blob/main/docs/modelfile.md#valid-parameters-and-values
# and the runner options of api.md; all go in the request's `options` object.
_OLLAMA = (
    "frequency_penalty",
    "max_tokens",
    "min_p",
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "num_batch",
    "num_ctx",
    "num_gpu",
    "num_keep",
    "num_predict",
    "num_thread",
    "penalize_newline",
    "presence_penalty",
    "repeat_last_n",
    "repeat_penalty",
    "seed",
    "stop",
    "temperature",
    "tfs_z",
    "top_k",
    "top_p",
    "typical_p",
)

# Per provider prefix. A provider not listed (echo, a third-party one) takes any option:
# echo ignores them, so a weave tried offline keeps the options it will use for real.
KNOWN: dict[str, tuple[str, ...]] = {
    "openai": _OPENAI,
    "openrouter": _OPENROUTER,
    "anthropic": _ANTHROPIC,
    "ollama": _OLLAMA,
}


def parse_value(text: str) -> Any:
    """A value typed after `-o KEY`: a number as a number, true/false as booleans, a JSON
    list or object as itself, anything else as the string it is."""
    if text in ("true", "false"):
        return text == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    if text.lstrip().startswith(("[", "{")):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UsageError(f"-o value {text!r} starts like JSON but is not: {exc}") from None
    return text


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`-o KEY VALUE` pairs as options, each value read by `parse_value`."""
    return {key: parse_value(value) for key, value in pairs}


def option_problem(model: str, key: str, value: Any) -> str | None:
    """Why option `key` with `value` does not suit `model`'s provider, or None."""
    prefix = provider_of(model)
    known = KNOWN.get(prefix)
    if known is not None and key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown option '{key}' for {prefix}{hint}; {prefix} options: {', '.join(known)}"
    if key == TOKEN_LIMIT and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return f"option '{key}' must be a whole number of tokens from 1, not {value!r}"
    return None


def check_options(model: str, options: Mapping[str, Any]) -> None:
    """Raise UsageError for the first option `model`'s provider does not know."""
    for key, value in options.items():
        problem = option_problem(model, key, value)
        if problem is not None:
            raise UsageError(problem)


def split_limit(options: Mapping[str, Any], default: int) -> tuple[int, dict[str, Any]]:
    """The token limit (`max_tokens`, else `default`) and the other options."""
    rest = {k: v for k, v in options.items() if k != TOKEN_LIMIT}
    limit = options.get(TOKEN_LIMIT, default)
    return (limit if isinstance(limit, int) else default), rest
