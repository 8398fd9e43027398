"""Structured output (`--schema`, `schema:`): each wire's own field, the reply checked
against the schema, one correction, then a failure reply with `error_type: "schema"`.
Through the providers and the real CLI, against the fake LLM server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_loom, wait_for
from home_kit import stop_all  # noqa: F401
from llm_server import CallTool, Corrected, LLMServer, Structured

from loom.providers import resolve
from loom.providers.base import Request, ToolSpec, Turn
from loom.providers.json_schema import SchemaInvalid, check_schema, problems
from loom.store.queue import list_messages, read_message

LABEL = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "question", "praise"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["label", "urgency"],
    "additionalProperties": False,
}
SCHEMA = json.dumps(LABEL)
KEYS = {"OPENAI_API_KEY": "sk-test-openai-3f9c1a", "ANTHROPIC_API_KEY": "sk-ant-test-c4d81e"}
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "ollama/qwen2.5:3b"]


def env_for(server: LLMServer) -> dict[str, str]:
    return {**server.env(), **KEYS, "LOOM_HTTP_TIMEOUT": "5"}


def native_field(model: str, body: dict[str, object]) -> object:
    """What each wire format carries the schema in."""
    if model.startswith("openai/"):
        return body["response_format"]
    if model.startswith("anthropic/"):
        return {"tools": body["tools"], "tool_choice": body["tool_choice"]}
    return body["format"]


def expected_field(model: str) -> object:
    if model.startswith("openai/"):
        return {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": LABEL, "strict": True},
        }
    if model.startswith("anthropic/"):
        tool = {
            "name": "structured_reply",
            "description": "Give your answer: its input is the whole reply.",
            "input_schema": LABEL,
        }
        return {"tools": [tool], "tool_choice": {"type": "tool", "name": "structured_reply"}}
    return LABEL


# ---------------------------------------------------------------- the validator


def test_the_validator_names_each_place_a_value_breaks_the_schema() -> None:
    assert problems({"label": "bug", "urgency": 3}, LABEL) == []
    found = problems({"label": "rant", "urgency": 9, "extra": 1}, LABEL)
    assert found == [
        '$.label: "rant" is not one of "bug", "question", "praise"',
        "$.urgency: 9 is more than the maximum 5",
        "$: 'extra' is not an allowed property",
    ]
    assert problems({"urgency": 2.5}, LABEL) == [
        "$: 'label' is required",
        "$.urgency: expected integer, got a number",
    ]


def test_the_validator_covers_the_subset_providers_accept() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}},
            "note": {"type": ["string", "null"], "minLength": 2, "maxLength": 4},
            "kind": {"const": "ticket"},
            "size": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["big"]}]},
        },
    }
    check_schema(schema)
    good = {"tags": ["a", "bc"], "note": None, "kind": "ticket", "size": "big"}
    assert problems(good, schema) == []
    bad = {"tags": ["A"], "note": "x", "kind": "other", "size": 1.5}
    assert problems(bad, schema) == [
        "$.tags[0]: does not match the pattern '^[a-z]+$'",
        "$.note: shorter than 2 characters",
        '$.kind: must be "ticket"',
        "$.size: matches none of the anyOf schemas",
    ]
    assert problems({"note": "toolong"}, schema) == ["$.note: longer than 4 characters"]
    assert problems({"tags": [True]}, schema) == ["$.tags[0]: expected string, got a boolean"]


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "string"}, "must describe an object at its root"),
        ({"type": "object", "properties": {"a": {"type": "text"}}}, "'type' at .a must be"),
        ({"type": "object", "oneOf": []}, "unsupported keyword 'oneOf' at the root"),
        ({"type": "object", "properties": {"a": {"pattern": "("}}}, "not a regular expression"),
        ([], "must be a JSON object, not an array"),
    ],
)
def test_a_schema_outside_the_subset_is_refused(schema: object, says: str) -> None:
    with pytest.raises(SchemaInvalid, match=says):
        check_schema(schema)


# ---------------------------------------------------------------- providers


@pytest.mark.parametrize("model", MODELS)
def test_each_provider_sends_the_schema_in_its_own_field(model: str, server: LLMServer) -> None:
    server.script(Structured('{"label": "bug", "urgency": 2}'))
    provider, model_id = resolve(model, env_for(server))
    try:
        request = Request(model_id, (Turn("user", "it crashes"),), schema=LABEL)
        completion = provider.complete(request, lambda text: None)
    finally:
        provider.close()
    assert native_field(model, server.last.body) == expected_field(model)
    assert json.loads(completion.text) == {"label": "bug", "urgency": 2}
    assert completion.tool_calls == ()


def test_openai_asks_for_strict_mode_only_when_the_schema_allows_it(server: LLMServer) -> None:
    loose = {"type": "object", "title": "ticket", "properties": {"label": {"type": "string"}}}
    provider, model_id = resolve("openai/gpt-4o-mini", env_for(server))
    try:
        provider.complete(Request(model_id, (Turn("user", "x"),), schema=loose), print)
    finally:
        provider.close()
    sent = server.last.body["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "ticket", "schema": loose, "strict": False},
    }


@pytest.mark.parametrize("model", MODELS)
def test_a_whole_json_reply_carries_the_structured_answer_too(model: str) -> None:
    with LLMServer(stream=False) as server:
        server.script(Structured('{"label": "praise", "urgency": 1}'))
        provider, model_id = resolve(model, env_for(server))
        try:
            request = Request(model_id, (Turn("user", "nice"),), schema=LABEL)
            completion = provider.complete(request, lambda text: None)
        finally:
            provider.close()
    assert json.loads(completion.text) == {"label": "praise", "urgency": 1}


def test_anthropic_with_other_tools_lets_the_model_call_them_before_it_answers(
    server: LLMServer,
) -> None:
    calc = ToolSpec("calc", "Evaluates arithmetic.", {"type": "object", "properties": {}})
    server.script(CallTool("calc", {"expression": "1 + 1"}), Structured('{"label": "bug"}'))
    provider, model_id = resolve("anthropic/claude-sonnet-4-5", env_for(server))
    request = Request(model_id, (Turn("user", "x"),), tools=(calc,), schema=LABEL)
    try:
        first = provider.complete(request, lambda text: None)
        second = provider.complete(request, lambda text: None)
    finally:
        provider.close()
    body = server.last.body
    assert body["tool_choice"] == {"type": "any"}
    assert [tool["name"] for tool in body["tools"]] == ["calc", "structured_reply"]
    assert [call.name for call in first.tool_calls] == ["calc"]
    assert second.tool_calls == ()
    assert json.loads(second.text) == {"label": "bug"}


# ---------------------------------------------------------------- the CLI, --stdin


def start_stdin(model: str, server: LLMServer, text: str, schema: str = SCHEMA):
    return run_loom(
        "agent", "start", "t", "--model", model, "--stdin", "--schema", schema,
        input=text, env=env_for(server),
    )  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
def test_a_valid_answer_is_the_reply_body_as_json(model: str, server: LLMServer) -> None:
    server.script(Structured('{ "label": "question",\n "urgency": 1 }'))
    r = start_stdin(model, server, "how do I reset it?")
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"label":"question","urgency":1}\n'
    assert native_field(model, server.last.body) == expected_field(model)
    assert len(server.requests) == 1


@pytest.mark.parametrize("model", MODELS)
def test_an_invalid_answer_is_corrected_once_with_the_validation_error(
    model: str, server: LLMServer, loom_home: Path
) -> None:
    server.script(
        *[Corrected('{"label": "rant", "urgency": 3}', '{"label": "bug", "urgency": 3}')] * 2
    )
    r = start_stdin(model, server, "it crashes on start")
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"label":"bug","urgency":3}\n'  # only the valid answer is printed
    assert len(server.requests) == 2
    messages = server.last.body["messages"]
    said = json.dumps(messages[-1])
    assert '\\"rant\\" is not one of' in said
    assert native_field(model, server.last.body) == expected_field(model)
    (reply,) = list_messages(loom_home / "agents" / "t" / "outbox")
    assert json.loads(read_message(loom_home / "agents" / "t" / "outbox" / reply).body) == {
        "label": "bug",
        "urgency": 3,
    }


@pytest.mark.parametrize("model", MODELS)
def test_an_answer_still_invalid_fails_with_error_type_schema(
    model: str, server: LLMServer, loom_home: Path
) -> None:
    server.script(Structured("I think it is a bug."), Structured('{"label": "bug"}'))
    r = start_stdin(model, server, "it crashes on start")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "loom: agent t: the reply does not match the schema: $: 'urgency' is required" in (
        r.stderr
    )
    agent = loom_home / "agents" / "t"
    (failed,) = (agent / "inbox" / ".failed").glob("*.error.json")
    record = json.loads(failed.read_text())
    assert record["error_type"] == "schema"
    assert "'urgency' is required" in record["last_error"]
    (name,) = list_messages(agent / "outbox")
    reply = read_message(agent / "outbox" / name)
    assert reply.error is True
    assert "'urgency' is required" in reply.body
    assert len(server.requests) == 2


def test_a_bad_schema_is_one_clear_error_before_any_call(
    server: LLMServer, tmp_path: Path, loom_home: Path
) -> None:
    r = start_stdin("openai/gpt-4o-mini", server, "hi", schema='{"type": "string"}')
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        'loom: --schema must describe an object at its root (`"type": "object"`): '
        "every provider's structured output wants one"
    ]
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "object",')
    r = start_stdin("openai/gpt-4o-mini", server, "hi", schema=str(broken))
    assert r.returncode == 2
    assert r.stderr.startswith(f"loom: --schema {broken} is not JSON: ")
    assert len(r.stderr.strip().splitlines()) == 1
    r = start_stdin("openai/gpt-4o-mini", server, "hi", schema=str(tmp_path / "absent.json"))
    assert r.returncode == 2
    assert "cannot read --schema" in r.stderr
    assert server.requests == []
    assert not (loom_home / "agents" / "t").exists()


def test_echo_passes_a_valid_message_through_and_fails_any_other(loom_home: Path) -> None:
    args = ("agent", "start", "e", "--model", "echo", "--stdin", "--schema", SCHEMA)
    r = run_loom(*args, input='{"label": "praise", "urgency": 1}')
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"label":"praise","urgency":1}\n'
    r = run_loom(*args, input='{"label": "praise"}')
    assert r.returncode == 1
    assert "$: 'urgency' is required" in r.stderr
    r = run_loom(*args, input="just words")
    assert r.returncode == 1
    assert "the reply does not match the schema: it is not JSON" in r.stderr


# ---------------------------------------------------------------- detached, loom send


@pytest.mark.usefixtures("stop_all")
def test_a_detached_agent_answers_loom_send_with_json(
    server: LLMServer, tmp_path: Path, loom_home: Path
) -> None:
    schema_file = tmp_path / "label.json"
    schema_file.write_text(json.dumps(LABEL, indent=2))
    env = env_for(server)
    start = ("agent", "start", "c", "--model", "openai/gpt-4o-mini", "--schema", str(schema_file))
    r = run_loom(*start, "-d", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((loom_home / "agents" / "c" / "schema.json").read_text()) == LABEL
    server.script(*[Corrected('{"label": "bug"}', '{"label": "bug", "urgency": 4}')] * 2)
    r = run_loom("send", "c", "the app crashes", "--wait", "--timeout", "20s", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '{"label":"bug","urgency":4}'
    assert server.last.body["response_format"]["json_schema"]["schema"] == LABEL
    # Started again with another schema: restarted, and it says why.
    schema_file.write_text(json.dumps({**LABEL, "required": ["label"]}))
    r = run_loom(*start, "-d", env=env)
    assert r.returncode == 0, r.stderr
    assert "schema changed" in r.stdout


# ---------------------------------------------------------------- loom.yml


WEAVE = """\
version: 1
pipes:
  by-label:
    from: [classifier]
    operators:
      - route:
          - {when: "label == 'bug'", to: bugs}
          - {to: other}
agents:
  - name: classifier
    model: openai/gpt-4o-mini
    system: Classify the message.
    schema:
      type: object
      properties:
        label: {type: string, enum: [bug, question, praise]}
        urgency: {type: integer, minimum: 1, maximum: 5}
      required: [label, urgency]
      additionalProperties: false
  - name: bugs
    model: echo
  - name: other
    model: echo
"""


def bodies(home: Path, agent: str) -> list[str]:
    outbox = home / "agents" / agent / "outbox"
    return [read_message(outbox / name).body for name in list_messages(outbox)]


def test_a_classifier_with_a_schema_feeds_a_route_pipe(
    server: LLMServer, weave_dir: Path, loom_home: Path
) -> None:
    (weave_dir / "loom.yml").write_text(WEAVE)
    env = env_for(server)
    r = run_loom("up", "-d", cwd=weave_dir, env=env)
    assert r.returncode == 0, r.stderr
    server.script(
        Structured('{"label": "bug", "urgency": 5}'),
        Structured('{"label": "praise", "urgency": 1}'),
    )
    assert run_loom("send", "classifier", "it crashes", "--wait", env=env).returncode == 0
    assert run_loom("send", "classifier", "love it", "--wait", env=env).returncode == 0
    wait_for(lambda: bodies(loom_home, "bugs") and bodies(loom_home, "other"), 20, "routing")
    assert bodies(loom_home, "bugs") == ['{"label":"bug","urgency":5}']
    assert bodies(loom_home, "other") == ['{"label":"praise","urgency":1}']
    assert server.requests[0].body["response_format"]["json_schema"]["strict"] is True
    # A changed schema changes the agent's config hash: `up` restarts it.
    (weave_dir / "loom.yml").write_text(WEAVE.replace("maximum: 5", "maximum: 3"))
    r = run_loom("up", "-d", cwd=weave_dir, env=env)
    assert r.returncode == 0, r.stderr
    assert "classifier" in next(ln for ln in r.stdout.splitlines() if "restarted" in ln)


def test_a_bad_schema_in_loom_yml_names_its_line(weave_dir: Path) -> None:
    text = WEAVE.replace("type: integer, minimum: 1", "type: integer, minimum: low")
    (weave_dir / "loom.yml").write_text(text)
    r = run_loom("validate", cwd=weave_dir)
    assert r.returncode == 1
    assert "loom.yml:14:7: `schema`: 'minimum' at .urgency must be a number" in r.stderr
    (weave_dir / "schema.json").write_text('{"type": "array"}')
    lines = WEAVE.splitlines()
    start = lines.index("    schema:")
    short = "\n".join([*lines[:start], "    schema: schema.json", *lines[start + 7 :]]) + "\n"
    (weave_dir / "loom.yml").write_text(short)
    r = run_loom("validate", cwd=weave_dir)
    assert r.returncode == 1
    assert "must describe an object at its root" in r.stderr
