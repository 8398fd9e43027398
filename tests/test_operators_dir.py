"""The `operators/` folder: standalone executables that follow the `command:` protocol.

One contract suite runs against every operator (STYLE 11); then each operator's own
behaviour, called exactly as a `command:` step calls it (body on stdin, a final newline
added), and through a pipe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_loom
from test_docs import blocks, matches, run_block

OPERATORS = ROOT / "operators"
EXECUTABLES = sorted(
    p for p in OPERATORS.iterdir() if p.name != "README.md" and not p.name.startswith(".")
)
NAMES = [p.name for p in EXECUTABLES]


def call(operator: str, body: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """Run an operator as a command step does: the body on stdin, ending in a newline."""
    data = body.encode() if isinstance(body, str) else body
    if not data.endswith(b"\n"):
        data += b"\n"
    return subprocess.run([str(OPERATORS / operator)], input=data, capture_output=True, timeout=30)


def lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return proc.stdout.decode("utf-8").splitlines()


# --- the folder ---------------------------------------------------------------------


def test_at_least_three_operators_in_at_least_two_languages() -> None:
    interpreters = {p.read_text("utf-8").splitlines()[0].split("/")[-1] for p in EXECUTABLES}
    assert len(EXECUTABLES) >= 3
    assert len(interpreters) >= 2, interpreters
    assert not (OPERATORS / "__init__.py").exists()


@pytest.mark.parametrize("operator", EXECUTABLES, ids=NAMES)
def test_each_operator_is_executable_documented_and_used(operator: Path) -> None:
    assert os.access(operator, os.X_OK), f"chmod +x operators/{operator.name}"
    assert operator.read_text("utf-8").startswith("#!")
    assert f"`{operator.name}`" in (OPERATORS / "README.md").read_text("utf-8")
    users = [p.name for p in (ROOT / "pipes").glob("*.yml") if operator.name in p.read_text()]
    assert users, f"no catalog pipe uses {operator.name}"


# --- the contract, for every operator -----------------------------------------------


@pytest.mark.parametrize("operator", NAMES)
def test_contract_binary_garbage_is_a_decision_not_a_crash(operator: str) -> None:
    # Bytes may pass through as they came (loom decodes output with replacement); what
    # matters is a clean exit: forward (0) or drop (1), never a crash.
    proc = call(operator, bytes(range(256)) * 4)
    assert proc.returncode in (0, 1), proc.stderr
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize("operator", NAMES)
def test_contract_empty_input_exits_cleanly(operator: str) -> None:
    proc = call(operator, "")
    assert proc.returncode in (0, 1)
    assert proc.stdout.strip() == b""


@pytest.mark.parametrize("operator", NAMES)
def test_contract_output_is_deterministic_one_message_per_line(operator: str) -> None:
    body = '# Title\nlevel=error msg="x" mail=a@b.io\nsecond line\n'
    first, second = call(operator, body), call(operator, body)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert all(line.strip() for line in lines(first))


@pytest.mark.parametrize("operator", NAMES)
def test_contract_a_huge_body_is_handled(operator: str) -> None:
    body = "level=info msg=" + "x" * 1_000_000 + "\n# heading\n"
    proc = call(operator, body)
    assert proc.returncode == 0, proc.stderr[:200]
    assert len(proc.stdout) >= 1_000_000


# --- each operator --------------------------------------------------------------------


def test_redact_masks_addresses_and_secrets_and_keeps_the_rest() -> None:
    proc = call(
        "redact.sh",
        "mail bob.smith@mail.example.org ip 192.168.1.20 password=hunter2&user=x\n"
        'token: abc123 {"secret": "s3", "name": "ok"} Bearer abc.DEF-1 café\n',
    )
    assert proc.returncode == 0
    assert lines(proc) == [
        "mail [email] ip [ip] password=[redacted]&user=x",
        'token: [redacted] {"secret": "[redacted]", "name": "ok"} Bearer [redacted] café',
    ]


def test_logfmt_converts_types_and_escapes_json() -> None:
    proc = call("logfmt.awk", 'level=warn msg="a \\"quoted\\" \\\\ path" n=-1.5e3 x=007 t=\tz ok')
    assert proc.returncode == 0
    [obj] = [json.loads(line) for line in lines(proc)]
    assert obj == {
        "level": "warn",
        "msg": 'a "quoted" \\ path',
        "n": -1500.0,
        "x": "007",
        "t": "\tz",
        "ok": True,
    }


def test_logfmt_drops_text_that_is_not_logfmt_and_says_why() -> None:
    proc = call("logfmt.awk", "just words here")
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"no key=value pairs" in proc.stderr


def test_md_sections_splits_by_heading_outside_code_fences() -> None:
    proc = call("md-sections.py", "intro\n# A\none\n~~~\n# code\n~~~\n### B ###\ntwo\n")
    assert proc.returncode == 0
    sections = [json.loads(line) for line in lines(proc)]
    assert [(s["heading"], s["level"], s["index"]) for s in sections] == [
        (None, 0, 0),
        ("A", 1, 1),
        ("B", 3, 2),
    ]
    assert sections[1]["text"] == "one\n~~~\n# code\n~~~"


def test_md_sections_drops_an_empty_document() -> None:
    proc = call("md-sections.py", "\n \n")
    assert proc.returncode == 1 and b"empty" in proc.stderr


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
def test_the_shell_and_awk_operators_run_under_busybox() -> None:
    body = b"a@b.io level=error\n"
    for tool, operator in (("sh", "redact.sh"), ("awk", "logfmt.awk")):
        args = ["busybox", tool] + (["-f"] if tool == "awk" else [])
        proc = subprocess.run([*args, str(OPERATORS / operator)], input=body, capture_output=True)
        assert proc.returncode == 0, proc.stderr


# --- through loom ----------------------------------------------------------------------


def test_an_operator_is_a_command_step_by_path(tmp_path: Path) -> None:
    pipe = tmp_path / "p.yml"
    pipe.write_text(f'- command: [{OPERATORS / "logfmt.awk"}]\n- map: "level"\n')
    r = run_loom("pipe", "run", str(pipe), input="level=error a=1\nnope\nlevel=info\n")
    assert r.returncode == 0
    assert r.stdout == "error\ninfo\n"
    assert "no key=value pairs" in r.stderr  # the operator's stderr, logged


def test_catalog_operators_are_found_by_name_without_any_setup(tmp_path: Path) -> None:
    r = run_loom("pipe", "run", "redact", input="from a@b.io\n", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from [email]\n"


def test_the_readme_examples_run(tmp_path: Path) -> None:
    env = dict(os.environ)
    for block in blocks(OPERATORS / "README.md"):
        for step, (stdout, code) in zip(block, run_block(block, ROOT, env), strict=True):
            assert code == 0, step.command
            assert matches([e for e in step.expected if e.strip()], stdout.splitlines()), (
                f"$ {step.command}\nexpected:\n" + "\n".join(step.expected) + "\nactual:\n" + stdout
            )
