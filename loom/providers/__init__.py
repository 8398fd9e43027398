"""Model routing: one table from a model-string prefix to a provider factory (SPEC 5).

Factories are named as "module:attribute" strings and imported only when a model with
their prefix is resolved, so importing this package stays cheap (no httpx). Built-in
providers register below exactly as a third-party one would.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import cast

from loom.errors import LoomError, UsageError
from loom.providers.base import Provider, ProviderFactory

__all__ = ["factory", "provider_of", "providers", "register", "resolve"]

# SPEC 5: a model string without a slash ("qwen3:8b") is an Ollama model, and so is one
# that starts with a registry host ("hf.co/user/model:Q4_K_M": a dot, which no provider
# prefix has). Any other "x/y" names its provider first: an unknown one is a typo
# ("opneai/gpt-4o"), not an Ollama model ("ollama/<namespace>/<model>" for those).
BARE_NAME_PREFIX = "ollama"

_FACTORIES: dict[str, str] = {}


def register(prefix: str, target: str) -> None:
    """Route model strings `prefix` and `prefix/<name>` to the factory at `target`.

    `target` is "package.module:attribute" (the attribute may be dotted); it is imported
    on first use. Registering a prefix again replaces the earlier factory.
    """
    module, _, attribute = target.partition(":")
    if not prefix or "/" in prefix or "." in prefix or not module or not attribute:
        raise ValueError(
            f"cannot register {prefix!r} -> {target!r}: want 'prefix' (no '/' or '.'), "
            "'module:attr'"
        )
    _FACTORIES[prefix] = target


def resolve(model: str, env: Mapping[str, str]) -> tuple[Provider, str]:
    """Return the provider for `model` and the model id that provider expects.

    Settings (keys, base URLs, timeouts) come from `env`, never from os.environ.
    Raises UsageError for an empty or malformed model string, or an unknown provider.
    """
    if not model.strip():
        raise UsageError(
            "No model given: pass a model string such as 'anthropic/<model>', "
            "'openai/<model>', 'openrouter/<vendor>/<model>', 'ollama/<model>' or 'echo'."
        )
    if any(character.isspace() for character in model):
        raise UsageError(f"Model '{model}' contains whitespace; model strings have none.")
    prefix = provider_of(model)
    named = model == prefix or model.startswith(prefix + "/")
    rest = model[len(prefix) + 1 :] if named else model
    return _load(prefix)(rest, env)


def providers() -> list[str]:
    """The registered provider prefixes, sorted."""
    return sorted(_FACTORIES)


def provider_of(model: str) -> str:
    """The prefix of the provider `model` goes to, without loading it (cheap enough for
    validation): a registered prefix before the first '/', the bare name of one
    ("echo"), or Ollama for any other name without a slash or with a registry host.

    Raises UsageError for "x/y" with an unknown `x`, suggesting the closest prefix.
    """
    prefix, slash, _ = model.partition("/")
    if prefix in _FACTORIES:
        return prefix
    if not slash or "." in prefix:
        return BARE_NAME_PREFIX
    known = providers()
    close = difflib.get_close_matches(prefix, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(f"unknown provider '{prefix}'{hint}; providers: {', '.join(known)}")


def factory(prefix: str) -> ProviderFactory:
    """The factory registered for `prefix` (imported now); LoomError when it cannot load."""
    return _load(prefix)


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
