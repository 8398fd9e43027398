"""`loom validate`: every problem of a loom.yml, with file, line and column (SPEC 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_loom

from loom.weave.parse import WeaveInvalid, read

GOOD = """\
version: 1
pipes:
  finding-filter:
    - filter: "type == 'finding'"
    - dedupe: {key: id}
  triage:
    from: [intake]
    operators:
      - route:
          - {when: "priority == 'urgent'", to: notifier}
          - {to: writer}
agents:
  - name: intake
    model: echo
  - name: notifier
    model: echo
  - name: researcher
    model: echo
  - name: writer
    model: "${WRITER_MODEL:-echo}"
    system: You write short reports.
    env: {REGION: "${REGION:-eu}"}
    from:
      - agent: researcher
        pipe: finding-filter
      - {agent: notifier, when: "!error"}
"""


def write(tmp_path: Path, text: str, name: str = "loom.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(WeaveInvalid) as caught:
        read(write(tmp_path, text), env or {})
    return [p.render("loom.yml") for p in caught.value.problems]


def test_a_good_weave_validates_from_the_command_line(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ok (4 agents, 2 pipes)" in r.stdout


def test_every_problem_is_reported_with_line_and_column(tmp_path: Path) -> None:
    text = GOOD.replace("model: echo\n  - name: notifier", "modle: echo\n  - name: notifier")
    text = text.replace("- filter: \"type == 'finding'\"", '- filter: "type ==== 1"')
    text = text.replace("{agent: notifier", "{agent: ghost")
    write(tmp_path, text)
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert any(ln.startswith("loom.yml:4:") and "JMESPath" in ln for ln in lines), lines
    assert "loom.yml:14:5: unknown key 'modle' in an agent; did you mean 'model'?" in lines
    assert any(ln.startswith("loom.yml:13:") and "needs a `model`" in ln for ln in lines)
    assert any("unknown agent 'ghost' in from" in ln for ln in lines)
    assert lines[-1].startswith("loom: 4 problems in loom.yml")
    assert not (tmp_path / "home").exists()


def test_empty_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "") == [
        "loom.yml:1:1: the file is empty: add `version: 1` and agents"
    ]


def test_yaml_syntax_error_shows_the_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "version: 1\nagents:\n  - name: a\n    model: [echo\n")
    assert problem.startswith("loom.yml:") and "invalid YAML" in problem


def test_tab_indentation_is_named(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "version: 1\nagents:\n\t- name: a\n")
    assert problem == "loom.yml:3:1: indented with a tab; YAML needs spaces"


def test_hostile_and_long_names(tmp_path: Path) -> None:
    long = "a" * 200
    found = problems(
        tmp_path,
        "version: 1\nagents:\n  - name: ../x\n    model: echo\n"
        f"  - name: {long}\n    model: echo\n",
    )
    assert len(found) == 2
    assert all("invalid agent name" in p for p in found)


def test_an_agent_cannot_read_from_itself(tmp_path: Path) -> None:
    found = problems(tmp_path, "version: 1\nagents:\n  - name: a\n    model: echo\n    from: [a]\n")
    assert any("'a' cannot take messages from itself" in p for p in found)


def test_a_pipe_and_an_agent_cannot_share_a_name(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "version: 1\npipes:\n  x:\n    - map: '@'\nagents:\n  - name: x\n    model: echo\n",
    )
    assert found == [
        "loom.yml:6:11: 'x' is already a pipe (line 3); names are shared by agents and pipes"
    ]


def test_cycles_are_named_hop_by_hop(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "version: 1\nagents:\n  - {name: a, model: echo, from: [b]}\n"
        "  - {name: b, model: echo, from: [a]}\n",
    )
    assert any(
        "circular route detected: " in p and "a → b → a" in p or "b → a → b" in p for p in found
    )


def test_an_unset_variable_without_default_is_named(tmp_path: Path) -> None:
    found = problems(tmp_path, "version: 1\nagents:\n  - name: a\n    model: ${MODEL_X}\n")
    assert found == [
        "loom.yml:4:12: ${MODEL_X} is not set (write ${MODEL_X:-default} for a default)"
    ]


def test_variable_expansion_cannot_inject_yaml(tmp_path: Path) -> None:
    hostile = "echo\n  - name: injected\n    model: echo"
    weave = read(
        write(tmp_path, "version: 1\nagents:\n  - name: a\n    model: ${M}\n"), {"M": hostile}
    )
    assert list(weave.agents) == ["a"]
    assert weave.agents["a"].model == hostile


def test_yaml_booleans_and_numbers_where_strings_belong(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "version: 1\nagents:\n  - name: a\n    model: 3\n    env: {DEBUG: yes}\n    on: x\n",
    )
    assert any("got the number 3; quote it" in p for p in found)
    assert any("env DEBUG must be a string, got true" in p for p in found)
    assert any("read as True" in p for p in found)


def test_a_generated_5000_line_weave_validates(tmp_path: Path) -> None:
    lines = ["version: 1", "pipes:", "  keep:", "    - filter: \"kind == 'x'\"", "agents:"]
    count = 1200
    for i in range(count):
        lines += [f"  - name: a{i}", "    model: echo"]
        if i:
            lines += [f"    from: [{{agent: a{i - 1}, pipe: keep}}]"]
    text = "\n".join(lines) + "\n"
    assert text.count("\n") >= 3500
    weave = read(write(tmp_path, text), {})
    assert len(weave.agents) == count


def test_config_lookup_order_and_missing_config(tmp_path: Path) -> None:
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 2
    assert "no loom.yml found" in r.stderr
    write(tmp_path, GOOD, "loom.yaml")
    assert run_loom("validate", cwd=tmp_path).returncode == 0
    other = tmp_path / "sub"
    other.mkdir()
    write(other, GOOD, "mine.yml")
    assert run_loom("validate", "--config", str(other / "mine.yml")).returncode == 0


def test_graph_formats(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    text = run_loom("graph", cwd=tmp_path).stdout
    assert "researcher (echo)" in text and "─[finding-filter]─▶ writer" in text
    dot = run_loom("graph", "--format", "dot", cwd=tmp_path).stdout
    assert dot.startswith("digraph weave {")
    assert '"researcher" -> "writer" [label="finding-filter"];' in dot
    mermaid = run_loom("graph", "-f", "mermaid", cwd=tmp_path).stdout
    assert mermaid.startswith("flowchart LR")
    assert 'n_notifier -->|"when !error"| n_writer' in mermaid
    assert run_loom("graph", "-f", "png", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ('"A=B\\nC": "1"', "invalid environment variable name 'A=B\\nC'"),
        ('V: "x\\nEVIL=2"', "the value of V holds a control character"),
        ('V: "${INJECTED}"', "the value of V holds a control character"),
    ],
)
def test_validate_and_up_refuse_the_same_bad_env_entries(
    tmp_path: Path, loom_home: Path, entry: str, complaint: str
) -> None:
    write(tmp_path, f"version: 1\nagents:\n  - name: a\n    model: echo\n    env: {{{entry}}}\n")
    env = {"INJECTED": "x\nOPENAI_BASE_URL=http://evil"}
    for command in (("validate",), ("up", "-d")):
        r = run_loom(*command, cwd=tmp_path, env=env)
        assert r.returncode == 1, (command, r.stderr)
        assert complaint in r.stderr and "loom.yml:5" in r.stderr, r.stderr
    assert not (loom_home / "agents" / "a").exists()


@pytest.mark.parametrize("limit", ["0", "-3", "2.5", "'ten'", "true"])
def test_a_from_entry_limit_is_a_whole_number_of_at_least_one(tmp_path: Path, limit: str) -> None:
    text = (
        "version: 1\nagents:\n  - name: a\n    model: echo\n  - name: b\n    model: echo\n"
        f"    from: [{{agent: a, limit: {limit}}}]\n"
    )
    assert problems(tmp_path, text) == ["loom.yml:7:30: `limit` must be a whole number >= 1"]


def test_a_from_entry_limit_becomes_the_edge_limit(tmp_path: Path) -> None:
    text = (
        "version: 1\nagents:\n  - name: a\n    model: echo\n  - name: b\n    model: echo\n"
        "    from: [{agent: a, limit: 7}]\n  - name: c\n    model: echo\n    from: [b]\n"
    )
    r = run_loom("validate", str(write(tmp_path, text)))
    assert r.returncode == 0, r.stderr
    from loom.weave.edges import weave_edges

    assert [e.limit for e in weave_edges(read(tmp_path / "loom.yml", {}))] == [7, 10_000]


def test_an_unknown_provider_in_model_is_named_with_its_place(tmp_path: Path) -> None:
    notifier = "  - name: notifier\n    model: "
    text = GOOD.replace(notifier + "echo", notifier + "opneai/x")
    write(tmp_path, text)
    r = run_loom("validate", cwd=tmp_path)
    assert r.returncode == 1
    assert (
        "loom.yml:16:12: unknown provider 'opneai' (did you mean openai?); "
        "providers: anthropic, echo, ollama, openai, openrouter"
    ) in r.stderr
    # Slashes inside an Ollama or OpenRouter model id are the provider's own.
    ok = GOOD.replace("model: echo", "model: ollama/qwen3:8b", 1).replace(
        "  - name: researcher\n    model: echo",
        "  - name: researcher\n    model: openrouter/meta-llama/llama-3.1-8b",
    )
    write(tmp_path, ok)
    assert run_loom("validate", cwd=tmp_path).returncode == 0
