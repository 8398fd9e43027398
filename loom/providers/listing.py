"""`loom models`: what each registered provider offers, asked of its server with a short
timeout; a provider without its settings, or whose server does not answer, is reported
as such, its key redacted from every text (docs/models.md#which-models-are-there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loom.errors import LoomError
from loom.providers import factory, provider_of, providers
from loom.providers.http import HttpProvider

# Long enough for a server on the other side of the world, short enough that a local
# Ollama that is not running does not hold up the list.
LIST_TIMEOUT = 3.0


@dataclass
class Offer:
    """One provider's answer: its models (as model strings), or why there are none."""

    provider: str
    models: list[str] = field(default_factory=list)
    problem: str | None = None
    # Whether a server answered (echo, built in, has none to ask).
    answered: bool = False

    def to_json(self) -> dict[str, object]:
        return {"provider": self.provider, "models": self.models, "error": self.problem}


def offers(env: Mapping[str, str], only: str | None = None) -> list[Offer]:
    """Each provider's offer (or just `only`'s), in name order."""
    names = providers()
    if only is not None and only not in names:
        provider_of(f"{only}/")  # the unknown-provider error, with its suggestion
    return [_offer(name, env) for name in names if only is None or name == only]


def _offer(prefix: str, env: Mapping[str, str]) -> Offer:
    # A built-in HTTP provider's factory is its class's `create`: the class can list.
    owner = getattr(factory(prefix), "__self__", None)
    if not (isinstance(owner, type) and issubclass(owner, HttpProvider)):
        # A provider with no server to ask (echo) offers its own name.
        return Offer(prefix, [prefix])
    try:
        provider = owner(env, model=prefix)
    except LoomError as exc:
        return Offer(prefix, problem=f"not configured: {exc}")
    try:
        if provider.key_variable and not env.get(provider.key_variable, "").strip():
            return Offer(prefix, problem=f"not configured: {provider.key_variable} is not set")
        ids = provider.list_models(LIST_TIMEOUT)
    except LoomError as exc:
        return Offer(prefix, problem=f"not reachable: {exc}")
    finally:
        provider.close()
    return Offer(prefix, [f"{prefix}/{i}" for i in ids], answered=True)
