"""The shape of the code: imports point one way (STYLE 2) and the CLI starts light (STYLE 14)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "loom"

# Lower layers never import higher ones; a module may import its own layer. A module not
# listed here fails the test, so a new module gets a place on purpose. The reasons are
# in docs/architecture.md; each line says why it sits above the ones before it.
LAYERS: list[tuple[str, ...]] = [
    # Foundations every module may use: error types, name rules, LOOM_* settings.
    ("loom.errors", "loom.names", "loom.settings", "loom.elapsed", "loom.wording"),
    # The store, bottom up: ids, atomic writes, bounded reads and the watcher need nothing
    # of the store; messages are files; the home lays out process folders; the queue
    # moves messages through one folder, logs write into it, usage.json counts tokens; a
    # process folder seen from outside (ps, stop, history) and the serve loop use them.
    ("loom.store", "loom.store.ids", "loom.store.atomic", "loom.store.files", "loom.store.watch"),
    ("loom.store.message", "loom.store.home"),
    ("loom.store.queue", "loom.store.logs", "loom.store.usage"),
    ("loom.store.processes", "loom.store.worker", "loom.store.history"),
    # Engines without a queue of their own: providers call a model; tools are plugins
    # a provider's tool calls run; the pipeline core parses, compiles and runs operators
    # (its queued pipe process serves with store.worker).
    ("loom.providers",),
    ("loom.tools", "loom.pipeline"),
    # What serves or fills one queue: an agent (which uses providers and tools), the
    # pipe front-ends (`pipe run`, `loom test`, pipe ls/create) and the library API.
    (
        "loom.agent",
        "loom.api",
        "loom.pipeline.pipe_run",
        "loom.pipeline.pipetest",
        "loom.pipeline.pipe_admin",
    ),
    # The router moves messages between queues; its conditions are pipeline expressions,
    # and it knows nothing of agents.
    ("loom.routing",),
    # Cluster mode carries the router's remote edges over NATS JetStream and runs the
    # bridges that fill local inboxes from it (the supervisor runs both).
    ("loom.cluster",),
    # The supervisor starts agents and pipe processes, runs the router, writes metrics.
    ("loom.supervisor",),
    # The operator's tools read what all of the above write: gc prunes the router's
    # delivery logs and reads crash records by the supervisor's rules; stats reads the
    # supervisor's metrics and the routes; trace reads gc's archive. gc is handed its
    # retention (the model is ops.gc.retention); it does not read loom.yml.
    ("loom.ops",),
    # The weave applies a whole loom.yml: agents, pipes, routes, supervisor control, and
    # it validates gc.retention with the gc's own rules.
    ("loom.weave",),
    ("loom.cli", "loom.__main__", "loom"),
]


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} has no layer in tests/test_architecture.py"
    return best[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return [m for m in found if m == "loom" or m.startswith("loom.")]


def test_imports_point_downwards() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_catalog" in path.parts:
            continue
        module = module_name(path)
        mine = layer_of(module)
        tree = ast.parse(path.read_text("utf-8"))
        for target in imported(tree, module):
            if target == "loom" and module != "loom":
                continue
            try:
                theirs = layer_of(target)
            except AssertionError:
                continue  # `from loom.x import name` also lists loom.x.name
            if theirs > mine:
                wrong.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert wrong == []


def test_the_cli_starts_without_heavy_imports() -> None:
    code = (
        "import sys, loom.cli; "
        "print(sorted(m for m in ('httpx', 'yaml', 'jmespath', 'pydantic', 'rich', 'typer', "
        "'click') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# What `loom send NAME TEXT` may not import: the CLI framework (loom.cli.fast runs it
# without), the providers' and the engine's libraries, and what only rarer paths need;
# dataclasses (with inspect, which it imports), typing and datetime took about a third of
# its time. `loom agent ps` has the same budget but datetime: it reads start times.
SEND_BUDGET = (
    "typer",
    "click",
    "httpx",
    "yaml",
    "jmespath",
    "pydantic",
    "rich",
    "ctypes",
    "shutil",
    "difflib",
    "subprocess",
    "dataclasses",
    "inspect",
    "typing",
    "datetime",
    "loom.pipeline",
    "loom.providers",
    "loom.agent",
    "loom.supervisor",
)
PS_BUDGET = tuple(m for m in SEND_BUDGET if m != "datetime")


@pytest.mark.parametrize(
    ("argv", "budget"),
    [(["send", "a", "hi"], SEND_BUDGET), (["agent", "ps", "--all"], PS_BUDGET)],
    ids=["send", "agent ps"],
)
def test_loom_send_and_ps_import_within_their_budgets(
    tmp_path: Path, argv: list[str], budget: tuple[str, ...]
) -> None:
    code = (
        f"import sys\nfrom loom.cli import main\nsys.argv = ['loom', *{argv!r}]\n"
        "try:\n    main()\nfinally:\n"
        f"    print(sorted(m for m in sys.modules if m.split('.')[0] in {budget!r}"
        f" or '.'.join(m.split('.')[:2]) in {budget!r}), file=sys.stderr)"
    )
    env = {**os.environ, "LOOM_HOME": str(tmp_path / "home"), "LOOM_FSYNC": "0"}
    queued = [sys.executable, "-m", "loom", "send", "a", "--create", "first"]
    assert subprocess.run(queued, env=env, capture_output=True).returncode == 0
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "[]"


# What `loom --help` may not import: the CLI framework (loom.cli.fast prints it without),
# and typing, json and pathlib, which together took about a third of its time.
HELP_BUDGET = ("typer", "click", "typing", "json", "pathlib", "shutil", "importlib.util")


def test_loom_help_imports_within_its_budget() -> None:
    code = (
        "import sys\nfrom loom.cli import main\nsys.argv = ['loom', '--help']\n"
        "try:\n    main()\nfinally:\n"
        f"    print(sorted(m for m in sys.modules if m in {HELP_BUDGET!r}), file=sys.stderr)"
    )
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: loom")
    assert out.stderr.strip().splitlines()[-1] == "[]"
