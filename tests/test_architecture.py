"""The shape of the code: imports point one way (STYLE 2) and the CLI starts light (STYLE 14)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "loom"

# Lower layers never import higher ones. A module not listed here fails the test, so
# a new module gets a place on purpose.
LAYERS: list[tuple[str, ...]] = [
    ("loom.errors", "loom.names", "loom.ids", "loom.settings", "loom.elapsed"),
    ("loom.message", "loom.atomic", "loom.files"),
    ("loom.home", "loom.queue", "loom.logs", "loom.watch", "loom.retry"),
    ("loom.providers", "loom.pipeline", "loom.worker", "loom.runner", "loom.tools"),
    (
        "loom.agents",
        "loom.handover",
        "loom.processes",
        "loom.api",
        "loom.pipe_run",
        "loom.pipetest",
        "loom.pipe_admin",
        "loom.metrics",
    ),
    ("loom.routing", "loom.supervisor"),
    ("loom.weave", "loom.trace", "loom.gc", "loom.stats"),
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
        "print(sorted(m for m in ('httpx', 'yaml', 'jmespath', 'pydantic', 'rich') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
