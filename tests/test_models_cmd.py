"""`loom models`: each provider's models from the fake server's listing endpoints, a clear
line for a provider that is not configured or not reachable, and no key in any output."""

from __future__ import annotations

import json
import socket

from conftest import run_loom
from llm_server import LLMServer

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-3f9c1a77",
    "ANTHROPIC_API_KEY": "sk-ant-test-c4d81e55",
    "OPENROUTER_API_KEY": "sk-or-test-9e2b7d11",
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_configured_provider_lists_its_models(server: LLMServer) -> None:
    server.models = ["small", "large"]
    r = run_loom("models", env={**server.env(), **KEYS})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "anthropic/large",
        "anthropic/small",
        "echo",
        "ollama/large",
        "ollama/small",
        "openai/large",
        "openai/small",
        "openrouter/large",
        "openrouter/small",
    ]
    assert r.stderr == ""
    by_path = {(q.path, q.headers.get("x-api-key")) for q in server.requests}
    assert ("/v1/models", KEYS["ANTHROPIC_API_KEY"]) in by_path
    assert ("/api/tags", None) in by_path
    assert ("/api/v1/models", None) in by_path
    anthropic = next(q for q in server.requests if "x-api-key" in q.headers)
    assert anthropic.headers["anthropic-version"] == "2023-06-01"
    openai = next(q for q in server.requests if q.headers.get("authorization", "").endswith("77"))
    assert openai.headers["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"


def test_a_provider_without_its_key_or_its_server_gets_a_clear_line(server: LLMServer) -> None:
    env = {
        **server.env(),
        "OPENAI_API_KEY": KEYS["OPENAI_API_KEY"],
        "OLLAMA_BASE_URL": f"http://127.0.0.1:{closed_port()}",
    }
    r = run_loom("models", env=env)
    assert r.returncode == 0, r.stderr  # OpenAI answered
    assert r.stdout.splitlines() == ["echo", "openai/model-a", "openai/model-b"]
    lines = r.stderr.splitlines()
    assert "loom: anthropic: not configured: ANTHROPIC_API_KEY is not set" in lines
    assert "loom: openrouter: not configured: OPENROUTER_API_KEY is not set" in lines
    [ollama] = [ln for ln in lines if ln.startswith("loom: ollama:")]
    assert ollama.startswith("loom: ollama: not reachable: Could not connect to Ollama at")


def test_exit_1_when_no_provider_answered_and_the_key_is_never_shown(server: LLMServer) -> None:
    server.models_status = 401  # the error body repeats the key it was given
    env = {**server.env(), **KEYS}
    r = run_loom("models", "--json", env=env)
    assert r.returncode == 1
    offers = {o["provider"]: o for o in json.loads(r.stdout)}
    assert offers["echo"] == {"provider": "echo", "models": ["echo"], "error": None}
    assert "HTTP 401" in offers["openai"]["error"]
    assert "[redacted]" in offers["openai"]["error"]
    for key in KEYS.values():
        assert key not in r.stdout + r.stderr
    r = run_loom("models", env=env)
    assert r.returncode == 1
    for key in KEYS.values():
        assert key not in r.stdout + r.stderr


def test_provider_picks_one_and_a_typo_is_named(server: LLMServer) -> None:
    r = run_loom("models", "--provider", "ollama", env=server.env())
    assert (r.returncode, r.stdout) == (0, "ollama/model-a\nollama/model-b\n")
    assert [q.path for q in server.requests] == ["/api/tags"]
    r = run_loom("models", "-p", "echo")
    assert (r.returncode, r.stdout) == (0, "echo\n")
    r = run_loom("models", "-p", "olama")
    assert r.returncode == 2
    assert "unknown provider 'olama' (did you mean ollama?)" in r.stderr
