"""Model routing: one table from a model-string prefix to a provider factory (SPEC 5).

Factories are named as "module:attribute" strings and imported only when a model with
their prefix is resolved, so importing this package stays cheap (no httpx). Built-in
providers register below exactly as a third-party one would.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import cast

from loom.errors import LoomError, UsageError
from loom.providers.base import Provider, ProviderFactory

__all__ = ["register", "resolve"]

# SPEC 5: a model string without a known prefix ("qwen3:8b") is an Ollama model.
BARE_NAME_PREFIX = "ollama"

_FACTORIES: dict[str, str] = {}


def register(prefix: str, target: str) -> None:
    """Route model strings `prefix` and `prefix/<name>` to the factory at `target`.

    `target` is "package.module:attribute" (the attribute may be dotted); it is imported
    on first use. Registering a prefix again replaces the earlier factory.
    """
    module, _, attribute = target.partition(":")
    if not prefix or "/" in prefix or not module or not attribute:
        raise ValueError(f"cannot register {prefix!r} -> {target!r}: want 'prefix', 'module:attr'")
    _FACTORIES[prefix] = target


def resolve(model: str, env: Mapping[str, str]) -> tuple[Provider, str]:
    """Return the provider for `model` and the model id that provider expects.

    Settings (keys, base URLs, timeouts) come from `env`, never from os.environ.
    Raises UsageError for an empty or malformed model string.
    """
    if not model.strip():
        raise UsageError(
            "No model given: pass a model string such as 'anthropic/<model>', "
            "'openai/<model>', 'openrouter/<vendor>/<model>', 'ollama/<model>' or 'echo'."
        )
    if any(character.isspace() for character in model):
        raise UsageError(f"Model '{model}' contains whitespace; model strings have none.")
    prefix, _, rest = model.partition("/")
    if prefix not in _FACTORIES:
        prefix, rest = BARE_NAME_PREFIX, model
    return _load(prefix)(rest, env)


def _load(prefix: str) -> ProviderFactory:
    target = _FACTORIES[prefix]
    module_name, _, attribute = target.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise LoomError(
            f"The provider for '{prefix}/' models could not be loaded from '{target}': {exc}"
        ) from exc
    if not callable(found):
        raise LoomError(f"The provider for '{prefix}/' models, '{target}', is not callable.")
    return cast(ProviderFactory, found)


register("anthropic", "loom.providers.anthropic:create")
register("openai", "loom.providers.openai:create")
register("openrouter", "loom.providers.openrouter:create")
register("ollama", "loom.providers.ollama:create")
register("echo", "loom.providers.echo:create")
