"""Which tools an agent gets (SPEC 12): all of them, or the ones named by `--tools`.

A choice is written into the agent's folder as `tools/`, one symlink per chosen tool
pointing at its plugin, so `ls -l agents/NAME/tools` shows it and a detached runner,
whatever its working folder, finds the same plugins. No `tools/` folder means every
tool in the project and global plugin folders; an empty one means none.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from loom.errors import UsageError
from loom.store import atomic
from loom.tools.describe import TOOL_NAME
from loom.tools.discovery import AGENT, Plugin

TOOLS_DIR = "tools"


def parse_names(raw: str) -> list[str]:
    """`--tools a,b` as a list of names; an empty string means no tools at all."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    check_names(names)
    return list(dict.fromkeys(names))


def check_names(names: list[str]) -> None:
    """Raise UsageError for a name that cannot be a tool (and so never a link name)."""
    for name in names:
        if not TOOL_NAME.fullmatch(name):
            raise UsageError(
                f"invalid tool name {name[:80]!r} in --tools: use letters, digits, '_' and '-'"
            )


def select(names: list[str], plugins: list[Plugin]) -> dict[str, Path]:
    """The plugin entry behind each named tool; UsageError for one that is unknown or
    has a problem, so a typo fails at start rather than at the model's first call."""
    usable = {p.name: p for p in plugins if p.usable}
    chosen: dict[str, Path] = {}
    for name in names:
        if name in usable:
            chosen[name] = usable[name].entry.absolute()
            continue
        broken = next((p for p in plugins if p.name == name and p.problem), None)
        if broken is not None:
            raise UsageError(f"tool '{name}' ({broken.entry}) cannot be used: {broken.problem}")
        known = ", ".join(sorted(usable)) or "none are installed"
        raise UsageError(f"no tool named '{name}' for --tools; the tools are: {known}")
    return chosen


def write(agent_dir: Path, chosen: dict[str, Path] | None) -> None:
    """Make the agent's `tools/` folder hold exactly the links in `chosen`; None removes
    it (all tools). Each link is replaced atomically, so a running agent never sees a
    half-made one."""
    folder = agent_dir / TOOLS_DIR
    if chosen is None:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)  # it holds links: rmtree removes them, not their targets
        return
    atomic.make_private_dir(folder)
    for name, target in chosen.items():
        atomic.write_symlink(folder / name, target)
    for entry in folder.iterdir():
        if entry.name not in chosen and (entry.is_symlink() or entry.is_file()):
            entry.unlink()


def agent_folders(agent_dir: Path, shared: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Where an agent's plugins are: its `tools/` folder when it has one, else the
    `shared` project and global folders."""
    folder = agent_dir / TOOLS_DIR
    return [(AGENT, folder)] if folder.is_dir() else shared
