"""Tool calling in every provider (SPEC 12), against the fake server speaking each wire
format, streamed and as one JSON body: tools offered, calls assembled, results replayed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from llm_server import CallTool, LLMServer, Reply, Status, behaviour_from_json
from raw_http import RawServer, reply

from loom.errors import ProviderError
from loom.providers import resolve
from loom.providers.anthropic import AnthropicProvider
from loom.providers.base import Completion, Request, ToolCall, ToolResult, ToolSpec, Turn
from loom.providers.http import HttpProvider
from loom.providers.ollama import OllamaProvider
from loom.providers.openai import OpenAIProvider

KEYS = {"OPENAI_API_KEY": "sk-1", "OPENROUTER_API_KEY": "sk-2", "ANTHROPIC_API_KEY": "sk-3"}
CALC = ToolSpec(
    "calc",
    "Evaluate arithmetic.",
    {"type": "object", "properties": {"expression": {"type": "string"}}},
)
ASK = (Turn("user", "what is 6 * 7?"),)


@dataclass(frozen=True)
class Case:
    model: str
    wire: str

    def __str__(self) -> str:
        return self.model.split("/")[0]


CASES = [
    Case("openai/gpt-4o-mini", "openai"),
    Case("openrouter/meta-llama/llama-3.1-8b-instruct", "openai"),
    Case("anthropic/claude-sonnet-4-5", "anthropic"),
    Case("ollama/qwen3:8b", "ollama"),
]


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    param: Case = request.param
    return param


@pytest.fixture(params=[None, False], ids=["streamed", "whole"])
def server(request: pytest.FixtureRequest) -> Iterator[LLMServer]:
    with LLMServer(stream=request.param) as fake:
        yield fake


def complete(
    case: Case, server: LLMServer, turns: tuple[Turn, ...] = ASK, tools: tuple = (CALC,)
) -> tuple[Completion, list[str]]:
    provider, model_id = resolve(case.model, {**server.env(), **KEYS, "LOOM_HTTP_TIMEOUT": "5"})
    deltas: list[str] = []
    try:
        return provider.complete(Request(model_id, turns, tools=tools), deltas.append), deltas
    finally:
        provider.close()


def test_tools_are_offered_in_each_wires_shape(case: Case, server: LLMServer) -> None:
    complete(case, server)
    schema = dict(CALC.input_schema)
    if case.wire == "anthropic":
        expected = [{"name": "calc", "description": "Evaluate arithmetic.", "input_schema": schema}]
    else:
        function = {"name": "calc", "description": "Evaluate arithmetic.", "parameters": schema}
        expected = [{"type": "function", "function": function}]
    assert server.last.body["tools"] == expected


def test_without_tools_the_request_has_no_tools_field(case: Case, server: LLMServer) -> None:
    completion, _ = complete(case, server, tools=())
    assert "tools" not in server.last.body
    assert completion == Completion("echo: what is 6 * 7?", completion.usage)


def test_a_tool_call_is_assembled_after_the_text(case: Case, server: LLMServer) -> None:
    server.script(CallTool("calc", {"expression": "6 * 7"}, text="Let me work it out."))
    completion, deltas = complete(case, server)
    assert completion.text == "Let me work it out." == "".join(deltas)
    [call] = completion.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("calc", {"expression": "6 * 7"})
    expected_id = {"openai": "call_001", "anthropic": "toolu_001"}.get(case.wire)
    # Ollama's calls carry no id: the provider makes one up, for results to refer to.
    assert call.id == expected_id if expected_id else call.id.startswith("call_")


def test_several_calls_in_one_answer_keep_their_order(case: Case, server: LLMServer) -> None:
    server.script(CallTool("calc", {"expression": "1"}, also=(("clock", {}), ("calc", {"e": 2}))))
    completion, _ = complete(case, server)
    assert [(c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("calc", {"expression": "1"}),
        ("clock", {}),
        ("calc", {"e": 2}),
    ]
    assert completion.text == ""
    assert len({c.id for c in completion.tool_calls}) == 3


def test_broken_argument_json_reaches_the_runner_verbatim(case: Case, server: LLMServer) -> None:
    server.script(CallTool("calc", '{"expression": "6 *'))
    completion, _ = complete(case, server)
    assert completion.tool_calls[0].arguments == '{"expression": "6 *'


def test_results_go_back_in_each_wires_shape(case: Case, server: LLMServer) -> None:
    calls = (ToolCall("id-1", "calc", '{"expression": "6 * 7"}'), ToolCall("id-2", "calc", "{x"))
    results = (
        ToolResult("id-1", "calc", "42"),
        ToolResult("id-2", "calc", "error: not JSON", is_error=True),
    )
    turns = (
        *ASK,
        Turn("assistant", "Working.", tool_calls=calls),
        Turn("tool", "", tool_results=results),
    )
    completion, _ = complete(case, server, turns)
    assert completion.text == "echo: tool said 42 | error: not JSON"
    sent = server.last.body["messages"]
    if case.wire == "anthropic":
        assert sent[1:] == [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Working."},
                    {
                        "type": "tool_use",
                        "id": "id-1",
                        "name": "calc",
                        "input": {"expression": "6 * 7"},
                    },
                    # Arguments that were never an object are replayed as one.
                    {"type": "tool_use", "id": "id-2", "name": "calc", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "id-1", "content": "42"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "id-2",
                        "content": "error: not JSON",
                        "is_error": True,
                    },
                ],
            },
        ]
    elif case.wire == "openai":
        assert sent[1:] == [
            {
                "role": "assistant",
                "content": "Working.",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": "calc", "arguments": arguments},
                    }
                    # The broken arguments go back as "{}", which a parsing server accepts.
                    for c, arguments in zip(calls, ['{"expression": "6 * 7"}', "{}"], strict=True)
                ],
            },
            {"role": "tool", "tool_call_id": "id-1", "content": "42"},
            {"role": "tool", "tool_call_id": "id-2", "content": "error: not JSON"},
        ]
    else:
        assert sent[1:] == [
            {
                "role": "assistant",
                "content": "Working.",
                "tool_calls": [
                    {"function": {"name": "calc", "arguments": {"expression": "6 * 7"}}},
                    {"function": {"name": "calc", "arguments": {}}},
                ],
            },
            {"role": "tool", "content": "42", "tool_name": "calc"},
            {"role": "tool", "content": "error: not JSON", "tool_name": "calc"},
        ]


def test_an_answer_after_tools_is_plain_text(case: Case, server: LLMServer) -> None:
    server.script(Reply("It is 42."))
    completion, deltas = complete(case, server)
    assert (completion.text, completion.tool_calls) == ("It is 42.", ())
    assert "".join(deltas) == "It is 42."


def test_ollama_model_without_tool_support_is_actionable() -> None:
    with LLMServer() as fake:
        fake.script(Status(400, "registry.ollama.ai/library/gemma:2b does not support tools"))
        with pytest.raises(ProviderError) as info:
            complete(Case("ollama/gemma:2b", "ollama"), fake)
    assert info.value.error_type == "tools_unsupported" and not info.value.transient
    assert "--tools ''" in str(info.value) and "gemma:2b" in str(info.value)


@pytest.mark.parametrize("provider_class", [OpenAIProvider, AnthropicProvider, OllamaProvider])
def test_a_json_body_that_is_not_a_reply_is_malformed(provider_class: type[HttpProvider]) -> None:
    answer = reply(b'{"unexpected": 1}', headers="Content-Type: application/json\r\n")
    with RawServer([answer]) as server:
        urls = {f"{p}_BASE_URL": server.url for p in ("OPENAI", "ANTHROPIC", "OLLAMA")}
        provider = provider_class({"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", **urls})
        with pytest.raises(ProviderError) as info:
            provider.complete(Request("m", ASK, tools=(CALC,)), print)
        provider.close()
    assert (info.value.error_type, info.value.transient) == ("malformed_response", False)


def test_tool_calls_can_be_scripted_as_json(case: Case, server: LLMServer) -> None:
    script = {"kind": "call_tool", "name": "calc", "arguments": {"e": 1}, "also": [["clock", {}]]}
    server.script(behaviour_from_json(script))
    completion, _ = complete(case, server)
    assert [(c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("calc", {"e": 1}),
        ("clock", {}),
    ]
