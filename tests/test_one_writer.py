"""State on disk is changed one way (SPEC 1, STYLE 5): only the atomic-write module and
the queue rename files into place; everything else calls them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "loom"

# The files allowed to rename: atomic writes (temp file, then rename) and the queue
# lifecycle (claim, acknowledge, fail, recover are renames, SPEC 4). Named by file,
# so they are found wherever in the package they live.
ALLOWED = ("atomic.py", "queue.py")
# Calls that put a file in place of another, as `module.function`.
RENAMES = {("os", "rename"), ("os", "replace"), ("os", "renames"), ("shutil", "move")}


def renames_in(tree: ast.AST) -> list[tuple[int, str]]:
    """Lines that rename: `os.rename(...)` and the like, a `Path.rename(...)` call (no
    other type in use has a `rename` method), and those functions imported bare."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in {m for m, _ in RENAMES}:
            for alias in node.names:
                if (node.module, alias.name) in RENAMES:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        if (owner, func.attr) in RENAMES or func.attr == "rename":
            found.append((node.lineno, ast.unparse(func)))
    return found


def test_only_the_atomic_and_queue_modules_rename_files() -> None:
    allowed = [p for p in PACKAGE.rglob("*.py") if p.name in ALLOWED]
    assert sorted(p.name for p in allowed) == sorted(ALLOWED)  # each is one file
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in allowed:
            continue
        for line, call in renames_in(ast.parse(path.read_text("utf-8"))):
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {call}")
    assert wrong == [], "write through loom.atomic or loom.queue instead"


def test_the_check_sees_each_way_of_renaming() -> None:
    source = (
        "import os, shutil\nfrom os import replace\n"
        "os.rename(a, b)\nos.replace(a, b)\nshutil.move(a, b)\nPath(a).rename(b)\n"
        "text.replace('x', 'y')\n"
    )
    assert [line for line, _ in renames_in(ast.parse(source))] == [2, 3, 4, 5, 6]
