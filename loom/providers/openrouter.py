"""OpenRouter (SPEC 5): `openrouter/<vendor>/<model>` over the OpenAI wire format."""

from __future__ import annotations

from loom.providers.openai_wire import OpenAIWireProvider


class OpenRouterProvider(OpenAIWireProvider):
    """OpenRouter; its model ids keep the vendor, e.g. "meta-llama/llama-3.1-8b-instruct"."""

    name = "OpenRouter"
    prefix = "openrouter"
    model_form = "openrouter/<vendor>/<model>"
    key_variable = "OPENROUTER_API_KEY"
    base_url_variable = "OPENROUTER_BASE_URL"
    default_base_url = "https://openrouter.ai/api/v1"

    @classmethod
    def accepts(cls, name: str) -> bool:
        """A model id here is "<vendor>/<model>", both parts non-empty."""
        vendor, _, model = name.partition("/")
        return bool(vendor) and super().accepts(model)


create = OpenRouterProvider.create
