"""Finding plugins (SPEC 12): executables in `./.loom/plugins/` (the project's) and
`$LOOM_HOME/plugins/` (global), the project's taking precedence.

A plugin is an executable file, or a folder holding an executable of the same name.
Nothing found is fatal: every entry that is not a usable tool is listed with its
problem, so `loom tools` can say what to fix.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loom.providers.base import ToolSpec
from loom.store.home import home
from loom.tools.describe import PluginProblem, describe
from loom.tools.settings import ToolSettings

PROJECT, GLOBAL, AGENT = "project", "global", "agent"
CACHE = ".cache"


@dataclass(frozen=True)
class Plugin:
    """One entry of a plugin folder and what became of it."""

    name: str  # the tool's name; the entry's file name when it could not be described
    entry: Path  # as found in the folder: a file, a folder, or a link to either
    origin: str  # "project", "global", or "agent" (an agent's own `tools/` folder)
    executable: Path | None = None  # what runs, links resolved
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None
    shadowed_by: Path | None = None  # a project plugin of the same name wins over a global one

    @property
    def usable(self) -> bool:
        """Whether the plugin is offered to models."""
        return self.problem is None and self.shadowed_by is None and self.executable is not None

    def spec(self) -> ToolSpec:
        """The tool as providers offer it."""
        return ToolSpec(self.name, self.description, self.input_schema)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record for `loom tools --json`."""
        return {
            "name": self.name,
            "origin": self.origin,
            "folder": str(self.entry.parent),
            "path": str(self.entry),
            "description": self.description,
            "input_schema": dict(self.input_schema),
            "usable": self.usable,
            "problem": self.problem,
            "shadowed_by": str(self.shadowed_by) if self.shadowed_by else None,
        }


def global_folder(home: Path) -> Path:
    """Where plugins for every project live."""
    return home / "plugins"


def project_folder(cwd: Path) -> Path:
    """Where a project's plugins live, relative to the working folder."""
    return cwd / ".loom" / "plugins"


def search_folders(home: Path, cwd: Path) -> list[tuple[str, Path]]:
    """`(origin, folder)` in order of precedence; a project folder that *is* the global
    one (working in the folder above $LOOM_HOME) counts once."""
    project, shared = project_folder(cwd.absolute()), global_folder(home.absolute())
    if _same(project, shared):
        return [(GLOBAL, shared)]
    return [(PROJECT, project), (GLOBAL, shared)]


def discover(
    home: Path,
    cwd: Path,
    env: Mapping[str, str],
    settings: ToolSettings,
    *,
    refresh: bool = False,
) -> list[Plugin]:
    """Every plugin in the project and global folders, sorted by name, with precedence
    and duplicate names settled."""
    folders = search_folders(home, cwd)
    return find(folders, env, settings, cache_dir=global_folder(home) / CACHE, refresh=refresh)


def find(
    folders: list[tuple[str, Path]],
    env: Mapping[str, str],
    settings: ToolSettings,
    *,
    cache_dir: Path | None,
    refresh: bool = False,
) -> list[Plugin]:
    """The plugins of `(origin, folder)` pairs given in order of precedence, settled."""
    return settle(
        scan(folder, origin, env, settings, cache_dir=cache_dir, refresh=refresh)
        for origin, folder in folders
    )


def scan(
    folder: Path,
    origin: str,
    env: Mapping[str, str],
    settings: ToolSettings,
    *,
    cache_dir: Path | None,
    refresh: bool = False,
) -> list[Plugin]:
    """Describe every entry of one folder (hidden entries skipped), in name order."""
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:  # a link loop, a folder that cannot be searched
        problem = f"the folder {folder} cannot be listed: {exc.strerror}"
        return [Plugin(name=folder.name, entry=folder, origin=origin, problem=problem)]
    found = []
    for entry_name in names:
        entry = folder / entry_name
        plugin = Plugin(name=entry_name, entry=entry, origin=origin)
        try:
            executable = executable_of(entry)
            about = describe(
                executable,
                env=env,
                timeout=settings.describe_timeout,
                limit=settings.output_limit,
                cache_dir=cache_dir,
                refresh=refresh,
            )
        except PluginProblem as exc:
            found.append(replace(plugin, problem=str(exc)))
            continue
        found.append(
            replace(
                plugin,
                name=about.name,
                executable=executable,
                description=about.description,
                input_schema=about.input_schema,
            )
        )
    return found


def executable_of(entry: Path) -> Path:
    """The program a folder entry stands for, links resolved (so a plugin that looks
    beside itself for files finds them)."""
    real = entry
    try:
        real = entry.resolve()
        # What the links lead to. Python 3.13 resolves a loop of links without a word;
        # stat says ELOOP for it, as it says what else is wrong.
        mode = os.stat(real).st_mode
        if stat.S_ISDIR(mode):
            inner = real / real.name
            if not _is_file(inner):
                raise PluginProblem(f"a folder plugin needs an executable named {real.name} inside")
            return inner
        if not stat.S_ISREG(mode):
            raise PluginProblem("neither a file nor a folder")
        return real
    except FileNotFoundError:
        raise PluginProblem(f"a broken link to {real}") from None
    except RuntimeError:  # a loop of links, as Path.resolve says it before Python 3.13
        raise PluginProblem(_LOOP) from None
    except OSError as exc:  # a loop, or a folder on the way that cannot be searched
        problem = _LOOP if exc.errno == errno.ELOOP else f"cannot be used: {exc.strerror}"
        raise PluginProblem(problem) from None


_LOOP = "a link that leads back to itself"


def _is_file(path: Path) -> bool:
    """Whether `path` is a regular file; False when it is not there. Every other error
    is raised (Path.is_file hides them from Python 3.13 on)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def settle(folders: Iterable[list[Plugin]]) -> list[Plugin]:
    """Apply precedence: the first folder that defines a name wins and later ones are
    shadowed; two definitions of one name in that folder are both a problem."""
    settled: list[Plugin] = []
    owner: dict[str, list[Plugin]] = {}
    for plugins in folders:
        folder_names: dict[str, list[Plugin]] = {}
        for plugin in plugins:
            if plugin.problem is None:
                folder_names.setdefault(plugin.name, []).append(plugin)
        for plugin in plugins:
            if plugin.problem is not None:
                settled.append(plugin)
            elif plugin.name in owner:
                settled.append(replace(plugin, shadowed_by=owner[plugin.name][0].entry))
            elif len(folder_names[plugin.name]) > 1:
                others = [p.entry.name for p in folder_names[plugin.name] if p is not plugin]
                problem = f"tool name '{plugin.name}' is also used by {', '.join(others)} here"
                settled.append(replace(plugin, problem=problem))
            else:
                settled.append(plugin)
        for name, group in folder_names.items():
            owner.setdefault(name, group)
    order = {PROJECT: 0, AGENT: 0, GLOBAL: 1}
    return sorted(settled, key=lambda p: (p.name, order.get(p.origin, 2), p.entry.name))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a loop of links: RuntimeError before Python 3.13
        return a == b


def visible(*, refresh: bool = False) -> list[Plugin]:
    """Every plugin seen from the current folder, with this process's environment."""
    env = dict(os.environ)
    return discover(home(), Path.cwd(), env, ToolSettings.from_env(env), refresh=refresh)
