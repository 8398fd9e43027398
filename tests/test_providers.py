"""Providers (SPEC 5): one contract suite run against every HTTP provider through a real
socket server speaking each API's wire format, plus the registry and the echo model."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import run_loom
from hypothesis import given
from hypothesis import strategies as st
from llm_server import (
    CallTool,
    Drop,
    EchoAuth,
    Endless,
    Hang,
    KeepAlive,
    LLMServer,
    Malformed,
    ModelNotFound,
    Reply,
    Status,
    StreamError,
    chunks_of,
)
from raw_http import Raw, RawServer, reply

from loom.errors import LoomError, MissingApiKey, ProviderError, UsageError
from loom.providers import register, resolve
from loom.providers.base import Completion, Request, ToolSpec, Turn, Usage
from loom.providers.openai import OpenAIProvider
from loom.providers.redact import REDACTED, redact
from loom.providers.response import ResponseReader
from loom.providers.sse import parse_sse
from loom.providers.transport import Client

ROOT = Path(__file__).resolve().parent.parent

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-3f9c1a",
    "OPENROUTER_API_KEY": "sk-or-test-77b2e0",
    "ANTHROPIC_API_KEY": "sk-ant-test-c4d81e",
}


@dataclass(frozen=True)
class Case:
    """One provider under the contract: its model string and what goes over the wire."""

    model: str
    model_id: str
    key_variable: str | None
    base_url_variable: str
    wire: str
    path: str

    def __str__(self) -> str:
        return self.model.split("/")[0]


CASES = [
    Case(
        model="openai/gpt-4o-mini",
        model_id="gpt-4o-mini",
        key_variable="OPENAI_API_KEY",
        base_url_variable="OPENAI_BASE_URL",
        wire="openai",
        path="/v1/chat/completions",
    ),
    Case(
        model="openrouter/meta-llama/llama-3.1-8b-instruct",
        model_id="meta-llama/llama-3.1-8b-instruct",
        key_variable="OPENROUTER_API_KEY",
        base_url_variable="OPENROUTER_BASE_URL",
        wire="openai",
        path="/api/v1/chat/completions",
    ),
    Case(
        model="anthropic/claude-sonnet-4-5",
        model_id="claude-sonnet-4-5",
        key_variable="ANTHROPIC_API_KEY",
        base_url_variable="ANTHROPIC_BASE_URL",
        wire="anthropic",
        path="/v1/messages",
    ),
    Case(
        model="ollama/qwen2.5:3b",
        model_id="qwen2.5:3b",
        key_variable=None,
        base_url_variable="OLLAMA_BASE_URL",
        wire="ollama",
        path="/api/chat",
    ),
]
OPENAI, OPENROUTER, ANTHROPIC, OLLAMA = CASES
KEYED = [case for case in CASES if case.key_variable]

CALC = ToolSpec("calc", "Evaluates arithmetic.", {"type": "object", "properties": {}})

TURNS = (
    Turn("user", "first question"),
    Turn("assistant", "first answer"),
    Turn("user", "hello there"),
)


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    param: Case = request.param
    return param


@pytest.fixture(params=KEYED, ids=str)
def keyed(request: pytest.FixtureRequest) -> Case:
    param: Case = request.param
    return param


@pytest.fixture
def env(server: LLMServer) -> dict[str, str]:
    return {**server.env(), **KEYS, "LOOM_HTTP_TIMEOUT": "5"}


def call(
    case: Case, env: dict[str, str], system: str | None = None
) -> tuple[Completion, list[str]]:
    """Run one completion of TURNS; return it and the deltas seen on the way."""
    provider, model_id = resolve(case.model, env)
    deltas: list[str] = []
    try:
        return provider.complete(Request(model_id, TURNS, system=system), deltas.append), deltas
    finally:
        provider.close()


def failure(case: Case, env: dict[str, str]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call(case, env)
    return info.value


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ---------------------------------------------------------------- replies


def test_deltas_arrive_in_order_and_join_to_the_reply(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    server.script(Reply(text, chunk_size=4))
    completion, deltas = call(case, env)
    assert deltas == chunks_of(text, 4)
    assert completion.text == text


def test_reply_answers_the_last_user_turn(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    completion, deltas = call(case, env)
    assert completion.text == "echo: hello there"
    assert "".join(deltas) == completion.text


def test_usage_is_reported(case: Case, server: LLMServer, env: dict[str, str]) -> None:
    server.script(Reply("fine", input_tokens=12, output_tokens=5))
    completion, _ = call(case, env)
    usage = completion.usage
    assert (usage.input_tokens, usage.output_tokens) == (12, 5)
    # The fake OpenAI and Anthropic wires report a prompt cache that was not used.
    assert usage.cache_read_tokens == (None if case.wire == "ollama" else 0)


def test_request_carries_system_prompt_turns_and_credentials(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    call(case, env, system="Be brief.")
    sent = server.last
    turns = [{"role": t.role, "content": t.content} for t in TURNS]
    assert sent.path == case.path
    assert sent.body["model"] == case.model_id
    assert sent.body["stream"] is True
    if case.wire == "anthropic":
        assert sent.body["system"] == "Be brief."
        assert sent.body["messages"] == turns
        assert sent.body["max_tokens"] == 4096
        assert sent.headers["x-api-key"] == KEYS["ANTHROPIC_API_KEY"]
        assert sent.headers["anthropic-version"] == "2023-06-01"
    else:
        assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, *turns]
    if case.wire == "openai":
        assert sent.body["stream_options"] == {"include_usage": True}
        assert sent.headers["authorization"] == f"Bearer {KEYS[str(case.key_variable)]}"
    if case.key_variable is None:
        assert "authorization" not in sent.headers


def test_a_base_url_with_a_query_and_a_space_keeps_the_query_after_the_path(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    # As Azure OpenAI's deployments take `?api-version=`; a space goes out encoded.
    base = env[case.base_url_variable]
    env = {**env, case.base_url_variable: f"{base}/my deployment?api-version=2024-06-01"}
    completion, _ = call(case, env)
    assert completion.text.endswith("hello there")
    prefix = urlsplit(base).path  # /v1 for the OpenAI wire, "" for the others
    folder = f"{prefix}/my%20deployment"
    endpoint = case.path.removeprefix(prefix)
    assert server.last.path == f"{folder}{endpoint}?api-version=2024-06-01"


def test_no_system_prompt_sends_only_the_turns(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    call(case, env)
    body = server.last.body
    assert "system" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_openai_asks_for_max_completion_tokens_and_openrouter_for_max_tokens(
    server: LLMServer, env: dict[str, str]
) -> None:
    call(OPENAI, env)
    assert server.last.body["max_completion_tokens"] == 4096
    call(OPENROUTER, env)
    assert server.last.body["max_tokens"] == 4096


# ---------------------------------------------------------------- failures


def test_rate_limit_is_transient_with_retry_after(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    server.script(Status(429, "Slow down, please.", retry_after=7))
    error = failure(case, env)
    assert (error.error_type, error.transient, error.status) == ("rate_limited", True, 429)
    assert error.retry_after == 7.0
    assert "429" in str(error) and "Slow down, please." in str(error)


def test_retry_after_may_be_an_http_date(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    server.script(Status(429, retry_after=format_datetime(when, usegmt=True)))
    error = failure(case, env)
    assert error.retry_after is not None and 100 < error.retry_after <= 120


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(
    case: Case, server: LLMServer, env: dict[str, str], status: int
) -> None:
    server.script(Status(status, "upstream exploded"))
    error = failure(case, env)
    assert (error.error_type, error.transient, error.status) == ("server_error", True, status)
    assert str(status) in str(error) and "upstream exploded" in str(error)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "bad_request"),
        (401, "auth"),
        (403, "forbidden"),
        (404, "not_found"),
        (422, "bad_request"),
    ],
)
def test_client_errors_are_permanent(
    case: Case, server: LLMServer, env: dict[str, str], status: int, error_type: str
) -> None:
    server.script(Status(status, "you did something wrong"))
    error = failure(case, env)
    assert (error.error_type, error.transient, error.status) == (error_type, False, status)
    assert f"HTTP {status}" in str(error) and "you did something wrong" in str(error)


def test_silence_past_the_timeout_is_transient(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    server.script(Hang())
    error = failure(case, {**env, "LOOM_HTTP_TIMEOUT": "0.5"})
    assert (error.error_type, error.transient) == ("timeout", True)
    assert "LOOM_HTTP_TIMEOUT" in str(error)


def test_keep_alives_without_any_answer_time_out(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    # Each keep-alive is a read, so a per-read timeout alone would wait forever.
    server.script(KeepAlive(interval=0.1, seconds=6))
    started = time.monotonic()
    error = failure(case, {**env, "LOOM_HTTP_TIMEOUT": "0.5"})
    assert time.monotonic() - started < 5
    assert (error.error_type, error.transient) == ("timeout", True)
    assert "LOOM_HTTP_TIMEOUT" in str(error) and "no part of the answer" in str(error)


def test_a_slow_steady_answer_is_not_cut_by_the_timeout(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    text = "one two three four five six"
    server.script(Reply(text, pause=0.2))
    completion, deltas = call(case, {**env, "LOOM_HTTP_TIMEOUT": "0.5"})
    assert completion.text == text and len(deltas) == 6


def test_a_sink_slower_than_the_timeout_is_not_taken_for_a_silent_server(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    # The server streams steadily; what takes the time is passing the text on (a
    # paused pipe, a slow terminal), three times the timeout for one read's events.
    text = "one two three four five six seven eight"
    server.script(Reply(text, pause=0.1))
    provider, model_id = resolve(case.model, {**env, "LOOM_HTTP_TIMEOUT": "0.5"})
    deltas: list[str] = []

    def slow(delta: str) -> None:
        deltas.append(delta)
        time.sleep(0.3)

    try:
        completion = provider.complete(Request(model_id, TURNS), slow)
    finally:
        provider.close()
    assert completion.text == text and "".join(deltas) == text


def test_tool_call_fragments_count_as_progress(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    # Arguments long enough to arrive in pieces; the first keep-alive-free stretch is short.
    server.script(CallTool("calc", {"expression": "1 + 1"}))
    provider, model_id = resolve(case.model, {**env, "LOOM_HTTP_TIMEOUT": "0.5"})
    try:
        completion = provider.complete(Request(model_id, TURNS, tools=(CALC,)), print)
    finally:
        provider.close()
    assert [c.name for c in completion.tool_calls] == ["calc"]


def test_a_reply_body_that_never_ends_is_refused_at_the_limit(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    server.stream = False
    server.script(Endless())
    error = failure(case, env)
    assert (error.error_type, error.transient) == ("response_too_large", False)
    assert "64 MiB" in str(error)


def test_an_error_body_that_never_ends_is_read_only_for_its_excerpt(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    server.script(Endless(status=500))
    error = failure(case, env)
    assert (error.error_type, error.status) == ("server_error", 500)
    assert len(str(error)) < 400


def test_connection_dropped_mid_stream_is_transient(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    server.script(Drop(after=2, text="one two three four"))
    deltas: list[str] = []
    provider, model_id = resolve(case.model, env)
    with pytest.raises(ProviderError) as info:
        provider.complete(Request(model_id, TURNS), deltas.append)
    provider.close()
    assert (info.value.error_type, info.value.transient) == ("stream_interrupted", True)
    assert deltas == ["one ", "two "]


def test_stream_ending_without_its_final_event_is_transient(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    server.script(Drop(after=1, graceful=True))
    error = failure(case, env)
    assert (error.error_type, error.transient) == ("stream_interrupted", True)


def test_malformed_event_is_permanent(case: Case, server: LLMServer, env: dict[str, str]) -> None:
    server.script(Malformed(after=1))
    error = failure(case, env)
    assert (error.error_type, error.transient) == ("malformed_response", False)


def test_error_event_mid_stream_fails_the_call(
    case: Case, server: LLMServer, env: dict[str, str]
) -> None:
    server.script(StreamError("overloaded_error", "Overloaded", after=1))
    error = failure(case, env)
    assert error.transient
    assert "Overloaded" in str(error)


def test_anthropic_overloaded_event_is_labelled(server: LLMServer, env: dict[str, str]) -> None:
    server.script(StreamError("overloaded_error", "Overloaded"))
    assert failure(ANTHROPIC, env).error_type == "overloaded"


def test_connection_refused_is_transient_and_says_where(case: Case, env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    error = failure(case, {**env, case.base_url_variable: url})
    assert (error.error_type, error.transient) == ("connection", True)
    assert url in str(error)


def test_missing_key_is_reported_by_name_before_any_request(
    keyed: Case, server: LLMServer, env: dict[str, str]
) -> None:
    variable = str(keyed.key_variable)
    for missing in ({}, {variable: ""}):
        without = {k: v for k, v in env.items() if k != variable} | missing
        provider, model_id = resolve(keyed.model, without)
        with pytest.raises(MissingApiKey, match=variable) as info:
            provider.check()
        assert info.value.variable == variable
        assert keyed.model in str(info.value)
        with pytest.raises(MissingApiKey):
            provider.complete(Request(model_id, TURNS), print)
        provider.close()
    assert server.requests == []


def test_api_key_never_appears_in_error_text(
    keyed: Case, server: LLMServer, env: dict[str, str]
) -> None:
    key = KEYS[str(keyed.key_variable)]
    server.script(EchoAuth(401))
    error = failure(keyed, env)
    assert key in str(server.last.headers)
    assert key not in str(error) and key not in repr(error.args)
    assert "[redacted]" in str(error)
    assert error.error_type == "auth"


def test_a_key_across_the_excerpt_cut_of_a_mid_stream_error_is_redacted(
    keyed: Case, server: LLMServer, env: dict[str, str]
) -> None:
    key = KEYS[str(keyed.key_variable)]
    # The excerpt keeps 299 characters; the key starts at 285 of it (the OpenAI wire puts
    # "api_error: " first), so a cut would keep 14 characters of it.
    pad = 285 - (len("api_error: ") if keyed.wire == "openai" else 0)
    server.script(StreamError("api_error", "x" * pad + key + " was refused"))
    error = failure(keyed, env)
    assert key[:8] not in str(error)
    assert "[reda" in str(error)  # the marker itself may be what the cut shortens


def test_a_one_letter_key_is_redacted_where_it_stands_alone_not_in_words(
    keyed: Case, server: LLMServer, env: dict[str, str]
) -> None:
    variable = str(keyed.key_variable)
    server.script(StreamError("api_error", "the request exceeds the limit of key x, or x-ray"))
    text = str(failure(keyed, {**env, variable: "x"}))
    assert "the request exceeds the limit of key [redacted], or x-ray" in text, text


def test_redact_removes_the_key_whole_cut_and_repeated() -> None:
    key = "sk-LEAKCHECK-0123456789"
    text = f"a {key} b Bearer {key[:9]}… c {key[:8]} d {key[:7]} e {key}{key}"
    assert redact(text, [key]) == (
        f"a {REDACTED} b Bearer {REDACTED}… c {REDACTED} d {key[:7]} e {REDACTED}{REDACTED}"
    )
    assert redact("short k stays", ["k"]) == f"short {REDACTED} stays"
    # A key under MIN_FRAGMENT characters is redacted only as a whole token.
    assert redact("e exceeds x. key=x; x-api-key 'x'", ["x"]) == (
        f"e exceeds {REDACTED}. key={REDACTED}; x-api-key '{REDACTED}'"
    )
    assert redact("abc123 and xabc123 and abc1234", ["abc123"]) == (
        f"{REDACTED} and xabc123 and abc1234"
    )
    assert redact("nothing", ["", key]) == "nothing"


# ---------------------------------------------------------------- Ollama specifics


def test_ollama_missing_model_says_how_to_pull_it(server: LLMServer, env: dict[str, str]) -> None:
    server.script(ModelNotFound())
    error = failure(OLLAMA, env)
    assert (
        str(error) == "Model 'qwen2.5:3b' is not available in Ollama. Run: ollama pull qwen2.5:3b"
    )
    assert (error.error_type, error.transient, error.status) == ("model_not_found", False, 404)


def test_ollama_not_running_suggests_ollama_serve(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    error = failure(OLLAMA, {**env, "OLLAMA_BASE_URL": url})
    assert url in str(error)
    assert "ollama serve" in str(error) and "OLLAMA_BASE_URL" in str(error)


def test_ollama_base_url_may_omit_the_scheme(server: LLMServer, env: dict[str, str]) -> None:
    address = server.url.removeprefix("http://")
    completion, _ = call(OLLAMA, {**env, "OLLAMA_BASE_URL": address})
    assert completion.text == "echo: hello there"


def test_ollama_needs_no_key(server: LLMServer) -> None:
    provider, model_id = resolve("qwen2.5:3b", server.env())
    provider.check()
    assert provider.complete(Request(model_id, TURNS), print).text == "echo: hello there"
    provider.close()


# ---------------------------------------------------------------- echo


def test_echo_replies_with_the_last_user_turn_verbatim() -> None:
    provider, model_id = resolve("echo", {})
    provider.check()
    deltas: list[str] = []
    completion = provider.complete(Request(model_id, TURNS, system="ignored"), deltas.append)
    assert completion == Completion("hello there", Usage(None, None))
    assert "".join(deltas) == "hello there"


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("model", "provider_class", "model_id"),
    [
        ("anthropic/claude-sonnet-4-5", "AnthropicProvider", "claude-sonnet-4-5"),
        ("openai/gpt-4o-mini", "OpenAIProvider", "gpt-4o-mini"),
        ("openrouter/meta-llama/llama-3.1-8b", "OpenRouterProvider", "meta-llama/llama-3.1-8b"),
        ("ollama/qwen3:8b", "OllamaProvider", "qwen3:8b"),
        ("qwen3:8b", "OllamaProvider", "qwen3:8b"),
        ("llama3", "OllamaProvider", "llama3"),
        ("hf.co/someone/model:Q4_K_M", "OllamaProvider", "hf.co/someone/model:Q4_K_M"),
        ("echo", "EchoProvider", "echo"),
        ("echo/anything/at-all", "EchoProvider", "anything/at-all"),
    ],
)
def test_model_strings_route_to_their_provider(
    model: str, provider_class: str, model_id: str
) -> None:
    provider, resolved_id = resolve(model, {})
    assert type(provider).__name__ == provider_class
    assert resolved_id == model_id
    provider.close()


@pytest.mark.parametrize(
    "model",
    [
        "",
        "   ",
        "openai/",
        "anthropic",
        "openrouter/gpt-4o",
        "openrouter/vendor/",
        "ollama/",
        "gpt 4",
    ],
)
def test_malformed_model_strings_are_usage_errors(model: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve(model, {})
    assert str(info.value).endswith(".")


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("opneai/gpt-4o", "unknown provider 'opneai' (did you mean openai?); providers: "),
        ("antropic/claude", "unknown provider 'antropic' (did you mean anthropic?)"),
        ("qwen/qwen3", "unknown provider 'qwen'; providers: anthropic, echo, ollama,"),
    ],
)
def test_an_unknown_provider_prefix_is_an_error_not_an_ollama_model(model: str, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        resolve(model, {})


def test_agent_start_refuses_an_unknown_provider_at_once_with_one_line() -> None:
    r = run_loom("agent", "start", "a", "--model", "opneai/gpt-4o", "--stdin", input="hi")
    assert r.returncode == 2
    assert r.stderr == (
        "loom: unknown provider 'opneai' (did you mean openai?); "
        "providers: anthropic, echo, ollama, openai, openrouter\n"
    )
    r = run_loom("agent", "start", "a", "--model", "opneai/gpt-4o", "-d")
    assert r.returncode == 2
    assert "unknown provider 'opneai'" in r.stderr


def test_a_third_party_provider_registers_like_the_built_ins() -> None:
    register("test-thirdparty", "loom.providers.echo:create")
    provider, model_id = resolve("test-thirdparty/parrot", {})
    assert model_id == "parrot"
    assert provider.complete(Request(model_id, TURNS), print).text == "hello there"


def test_an_unloadable_provider_is_reported_clearly() -> None:
    register("test-broken", "no_such_module_for_loom:create")
    with pytest.raises(LoomError, match="test-broken.*no_such_module_for_loom"):
        resolve("test-broken/x", {})


def test_importing_the_registry_does_not_import_the_http_client() -> None:
    code = "import sys, loom.providers; print('loom.providers.transport' in sys.modules)"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_bad_timeout_setting_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="LOOM_HTTP_TIMEOUT"):
        resolve("openai/gpt-4o-mini", {"LOOM_HTTP_TIMEOUT": value})


@pytest.mark.parametrize(
    "url", ["api.example.com/v1", "http://:8080/v1", "http://localhost:abc", "http://[::1"]
)
def test_bad_base_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="OPENAI_BASE_URL"):
        resolve("openai/gpt-4o-mini", {"OPENAI_BASE_URL": url})


def test_a_key_with_a_line_break_is_a_usage_error_that_does_not_show_it() -> None:
    with pytest.raises(UsageError, match="OPENAI_API_KEY holds a line break") as info:
        resolve("openai/gpt-4o-mini", {"OPENAI_API_KEY": "sk-secret\r\nX-Evil: 1"})
    assert "sk-secret" not in str(info.value)


def test_a_key_with_a_byte_that_is_not_utf8_goes_as_that_byte() -> None:
    # Python reads such a byte of the environment as a lone surrogate (surrogateescape).
    key = os.fsdecode(b"sk-test-\xff-key")
    unauthorized = reply(b'{"error": {"message": "bad key"}}', status="401 Unauthorized")
    with RawServer([unauthorized]) as server:
        provider = OpenAIProvider({"OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.url})
        with pytest.raises(ProviderError, match="HTTP 401") as caught:
            provider.complete(Request("gpt-4o-mini", TURNS), print)
        provider.close()
    assert caught.value.error_type == "auth"
    assert server.requests[0].header("authorization") == "Bearer sk-test-\xff-key"


def test_a_proxy_loom_cannot_use_is_a_usage_error_before_any_call() -> None:
    with pytest.raises(UsageError, match="only http:// proxies"):
        resolve("openai/gpt-4o-mini", {"HTTPS_PROXY": "socks5://proxy:1080"})


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("socks5://user:hunter22@proxy:1080", "only http:// proxies"),
        ("://user:hunter22@proxy:3128", "not a proxy URL"),
        ("1http://user:hunter22@proxy:3128", "not a proxy URL"),
        ("http://user:hunter22@:3128", "names no host"),
        # Unencoded, a "#", "/" or "?" ends the authority: the password is read as a port.
        ("http://user:hunter22#x@proxy:3128", "percent-encoded"),
        ("http://user:hunter22/x@proxy:3128", "percent-encoded"),
    ],
)
def test_a_proxy_url_loom_cannot_use_is_refused_without_its_password(value: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        resolve("openai/gpt-4o-mini", {"HTTPS_PROXY": value})
    assert "hunter22" not in str(caught.value)


# ---------------------------------------------------------------- plumbing


def test_an_injected_client_is_used_and_left_open() -> None:
    stream = (
        b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
        b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}\n\n'
        b"data: [DONE]\n\n"
    )
    events = reply(stream, headers="Content-Type: text/event-stream\r\n", chunked=True)
    with RawServer([events]) as server, Client(timeout=5, connect=5) as client:
        env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": server.url + "/v1"}
        provider = OpenAIProvider(env, client=client)
        completion = provider.complete(Request("gpt-4o-mini", TURNS), print)
        provider.close()
        assert not client.closed
    assert completion == Completion("hi", Usage(3, 1))
    assert server.requests[0].line == "POST /v1/chat/completions HTTP/1.1"


def test_listing_models_from_a_trickling_server_gives_up_at_its_timeout() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n"
    # A byte at a time, each well within the timeout; the listing as a whole is not.
    with RawServer([Raw([head] + [b" "] * 300, then="close", pause=0.1)]) as server:
        provider = OpenAIProvider({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": server.url})
        with pytest.raises(ProviderError, match="for 1 s") as caught:
            provider.list_models(1.0)
        provider.close()
    assert caught.value.error_type == "timeout"


def test_stream_lines_split_anywhere_keep_their_text_and_breaks() -> None:
    # A character cut between chunks, CRLF cut between chunks, lone CRs, and a raw
    # U+2028 inside the JSON text, which is not a line break of an event stream.
    body = (
        'data: {"choices": [{"index": 0, "delta": {"content": "\u00e9\u2028"}}]}\r\n\r\n'
        'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\r\r'
        "data: [DONE]\n\n"
    ).encode()
    cuts = [body.index("\u00e9".encode()) + 1, body.index(b"\r\n") + 1, body.index(b'"x"') + 1]
    assert cuts == sorted(cuts)
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    pieces = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks]  # one chunk each
    wire = [head, *pieces, b"0\r\n\r\n"]
    with RawServer([Raw(wire)]) as server:
        env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": server.url}
        provider = OpenAIProvider(env)
        deltas: list[str] = []
        completion = provider.complete(Request("gpt-4o-mini", TURNS), deltas.append)
        provider.close()
    assert deltas == ["\u00e9\u2028", "x"]
    assert completion.text == "\u00e9\u2028x"


# Bytes a stream's lines are made of: the three line breaks, a character of two, three
# and four bytes, bytes that are not UTF-8, and "data:" to make events of.
STREAM_BYTES = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b" ", "\u00e9\u2028\U0001f600".encode(), b"\xff"])
    | st.sampled_from([b"\xe2\x82", b"\xf0", b"data: ", b":"]),
    max_size=40,
).map(b"".join)


@given(STREAM_BYTES, st.lists(st.floats(0, 1), max_size=8))
def test_stream_lines_are_the_bodys_lines_however_it_is_cut(body: bytes, cuts: list[float]) -> None:
    # The lines of the whole body, each decoded alone; chunks may be cut anywhere (between
    # CR and LF, inside a character) and may be empty.
    expected = re.split(rb"\r\n|\r|\n", body)
    if expected[-1] == b"":
        expected.pop()
    at = sorted(round(cut * len(body)) for cut in cuts)
    chunks = [body[a:b] for a, b in zip([0, *at], [*at, len(body)], strict=True)]
    reader = ResponseReader(chunks, source="test", timeout=None, limit=1 << 20)
    lines = [line for batch in reader.batches() for line in batch]
    assert lines == [line.decode("utf-8", "replace") for line in expected]


def test_sse_parser_follows_the_event_stream_rules() -> None:
    lines = [
        ": a comment",
        "event: greeting",
        "data: line one",
        "data:line two",
        "",
        "",
        "data: {}",
        "",
        "data: cut off before its blank line",
    ]
    # In batches as a reader gives them, cut anywhere.
    for cut in range(len(lines) + 1):
        events = parse_sse([lines[:cut], [], lines[cut:]])
        assert list(events) == [("greeting", "line one\nline two"), ("message", "{}")]


def test_fake_server_runs_standalone_and_takes_a_script() -> None:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "llm_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        script = [{"kind": "reply", "text": "from a script"}]
        httpx.post(f"{url}/_script", json=script).raise_for_status()
        completion, _ = call(OLLAMA, {"OLLAMA_BASE_URL": url})
        assert completion.text == "from a script"
        recorded = httpx.get(f"{url}/_requests").json()
        assert recorded[-1]["body"]["model"] == "qwen2.5:3b"
    finally:
        process.terminate()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
