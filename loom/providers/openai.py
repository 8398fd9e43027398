"""OpenAI's chat-completions API (SPEC 5): `openai/<model>`, OPENAI_API_KEY, OPENAI_BASE_URL."""

from __future__ import annotations

from loom.providers.openai_wire import OpenAIWireProvider


class OpenAIProvider(OpenAIWireProvider):
    """OpenAI, or any compatible server that OPENAI_BASE_URL points at."""

    name = "OpenAI"
    prefix = "openai"
    model_form = "openai/<model>"
    key_variable = "OPENAI_API_KEY"
    base_url_variable = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    max_tokens_field = "max_completion_tokens"


create = OpenAIProvider.create
