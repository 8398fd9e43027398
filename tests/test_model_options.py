"""Model options: `-o KEY VALUE` on `loom agent start` and `options:` in loom.yml reach each
wire in its own field, and an option the provider does not know is refused before any call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_loom
from llm_server import LLMServer

from loom.weave.model import AgentDef

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-3f9c1a",
    "ANTHROPIC_API_KEY": "sk-ant-test-c4d81e",
    "OPENROUTER_API_KEY": "sk-or-test-9e2b7d",
}
OPTIONS = ["-o", "temperature", "0.2", "-o", "max_tokens", "200", "-o", "seed", "7"]


def env_for(server: LLMServer) -> dict[str, str]:
    return {**server.env(), **KEYS, "LOOM_HTTP_TIMEOUT": "5"}


def ask(server: LLMServer, model: str, *options: str) -> tuple[int, str, str]:
    r = run_loom(
        "agent", "start", "a", "--model", model, "--stdin", *options,
        input="hello", env=env_for(server),
    )  # fmt: skip
    return r.returncode, r.stdout, r.stderr


def test_openai_gets_the_options_at_the_top_level_of_the_body(server: LLMServer) -> None:
    code, out, err = ask(server, "openai/gpt-4o-mini", *OPTIONS, "-o", "stop", '["END"]')
    assert code == 0, err
    assert out == "echo: hello\n"
    body = server.last.body
    assert body["temperature"] == 0.2
    assert body["seed"] == 7
    assert body["stop"] == ["END"]
    # max_tokens is loom's name for the limit; OpenAI's own API reads max_completion_tokens.
    assert body["max_completion_tokens"] == 200
    assert "max_tokens" not in body


def test_openrouter_sends_max_tokens_as_it_is_named(server: LLMServer) -> None:
    code, _, err = ask(server, "openrouter/meta-llama/llama-3.1-8b", *OPTIONS, "-o", "top_k", "40")
    assert code == 0, err
    body = server.last.body
    assert (body["temperature"], body["max_tokens"], body["top_k"]) == (0.2, 200, 40)


def test_anthropic_gets_the_options_at_the_top_level_of_the_body(server: LLMServer) -> None:
    code, out, err = ask(server, "anthropic/claude-sonnet-4-5", *OPTIONS[:6], "-o", "top_k", "5")
    assert code == 0, err
    assert out == "echo: hello\n"
    body = server.last.body
    assert (body["temperature"], body["max_tokens"], body["top_k"]) == (0.2, 200, 5)


def test_ollama_gets_the_options_in_its_options_object(server: LLMServer) -> None:
    code, out, err = ask(server, "ollama/qwen3:8b", *OPTIONS, "-o", "num_ctx", "8192")
    assert code == 0, err
    assert out == "echo: hello\n"
    body = server.last.body
    assert body["options"] == {"num_predict": 200, "temperature": 0.2, "seed": 7, "num_ctx": 8192}
    assert "temperature" not in body


def test_values_are_read_as_numbers_booleans_json_or_text(server: LLMServer) -> None:
    code, _, err = ask(
        server, "openai/gpt-4o-mini",
        "-o", "logprobs", "true", "-o", "user", "alice", "-o", "top_p", "1",
        "-o", "logit_bias", '{"50256": -100}',
    )  # fmt: skip
    assert code == 0, err
    body = server.last.body
    assert body["logprobs"] is True
    assert body["user"] == "alice"
    assert body["top_p"] == 1
    assert body["logit_bias"] == {"50256": -100}


@pytest.mark.parametrize(
    ("model", "option", "says"),
    [
        ("openai/gpt-4o-mini", "temprature", "unknown option 'temprature' for openai "
         "(did you mean temperature?); openai options: frequency_penalty, "),
        ("ollama/qwen3:8b", "max_completion_tokens", "unknown option 'max_completion_tokens' "
         "for ollama (did you mean max_tokens?); ollama options: "),
        ("anthropic/claude-sonnet-4-5", "seed", "unknown option 'seed' for anthropic; "),
    ],
)  # fmt: skip
def test_an_unknown_option_is_one_error_before_any_call(
    model: str, option: str, says: str, server: LLMServer, loom_home: Path
) -> None:
    code, out, err = ask(server, model, "-o", option, "1")
    assert code == 2
    assert out == ""
    assert err.startswith("loom: " + says)
    assert len(err.splitlines()) == 1
    assert server.requests == []
    assert not (loom_home / "agents" / "a").exists()


def test_max_tokens_must_be_a_whole_number(server: LLMServer) -> None:
    code, _, err = ask(server, "openai/gpt-4o-mini", "-o", "max_tokens", "lots")
    assert code == 2
    assert "option 'max_tokens' must be a whole number of tokens from 1, not 'lots'" in err


def test_echo_accepts_any_option_and_ignores_it(server: LLMServer, loom_home: Path) -> None:
    code, out, err = ask(server, "echo", "-o", "temperature", "0.2", "-o", "anything", "x")
    assert code == 0, err
    assert out == "hello\n"
    stored = json.loads((loom_home / "agents" / "a" / "options.json").read_text())
    assert stored == {"anything": "x", "temperature": 0.2}
    # Started again without options: the file goes.
    code, _, err = ask(server, "echo")
    assert code == 0, err
    assert not (loom_home / "agents" / "a" / "options.json").exists()


# ---------------------------------------------------------------- loom.yml

WEAVE = """\
version: 1
agents:
  - name: writer
    model: ollama/qwen3:8b
    options:
      temperature: 0.3
      num_ctx: 4096
      stop: ["\\n\\n"]
"""


def test_options_in_loom_yml_reach_a_detached_agent(
    server: LLMServer, weave_dir: Path, loom_home: Path
) -> None:
    (weave_dir / "loom.yml").write_text(WEAVE)
    env = env_for(server)
    r = run_loom("up", "-d", cwd=weave_dir, env=env)
    assert r.returncode == 0, r.stderr
    r = run_loom("send", "writer", "hi", "--wait", env=env)
    assert r.returncode == 0, r.stderr
    assert server.last.body["options"] == {
        "num_predict": 4096,
        "temperature": 0.3,
        "num_ctx": 4096,
        "stop": ["\n\n"],
    }
    # A changed option is a changed setting: `up` restarts the agent.
    (weave_dir / "loom.yml").write_text(WEAVE.replace("0.3", "0.5"))
    r = run_loom("up", "-d", cwd=weave_dir, env=env)
    assert r.returncode == 0, r.stderr
    assert "writer" in next(ln for ln in r.stdout.splitlines() if "restarted" in ln)


def test_an_unknown_option_in_loom_yml_names_its_line_and_column(weave_dir: Path) -> None:
    (weave_dir / "loom.yml").write_text(WEAVE.replace("num_ctx", "num_ctxx"))
    r = run_loom("validate", cwd=weave_dir)
    assert r.returncode == 1
    assert "loom.yml:7:7: unknown option 'num_ctxx' for ollama (did you mean num_ctx?)" in r.stderr
    (weave_dir / "loom.yml").write_text(WEAVE.replace("num_ctx: 4096", "max_tokens: -1"))
    r = run_loom("validate", cwd=weave_dir)
    assert "loom.yml:7:19: option 'max_tokens' must be a whole number" in r.stderr
    (weave_dir / "loom.yml").write_text(WEAVE.split("    options:")[0] + "    options: 3\n")
    r = run_loom("validate", cwd=weave_dir)
    assert "loom.yml:5:14: `options` must be a mapping" in r.stderr


def test_an_agent_without_options_keeps_its_config_hash() -> None:
    plain = AgentDef(name="w", model="echo")
    assert plain.config_hash() == AgentDef(name="w", model="echo", options={}).config_hash()
    assert plain.config_hash() != AgentDef(name="w", model="echo", options={"x": 1}).config_hash()
