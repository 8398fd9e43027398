"""Writing tool plugins for tests: small POSIX shell scripts, as a user would write them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "plugins"

OK = """echo '{"status": "ok", "result": "done"}'"""


def write_script(folder: Path, file_name: str, text: str, mode: int = 0o755) -> Path:
    """Write an executable file into `folder` (created) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(text)
    path.chmod(mode)
    return path


def description(name: str, text: str = "A test tool.", **properties: Any) -> str:
    """A valid `describe` answer as JSON text."""
    schema = {"type": "object", "properties": properties}
    return json.dumps({"name": name, "description": text, "input_schema": schema})


def sh_plugin(
    folder: Path,
    name: str,
    invoke: str = OK,
    *,
    describe: str | None = None,
    file_name: str | None = None,
) -> Path:
    """A shell plugin: `describe` prints `describe` (a valid description by default) and
    `invoke` runs the shell code `invoke`, which sees the arguments on stdin."""
    answer = describe if describe is not None else description(name)
    script = (
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"describe)\ncat <<'JSON'\n{answer}\nJSON\n;;\n"
        f"invoke)\n{invoke}\n;;\n"
        "esac\n"
    )
    return write_script(folder, file_name or name, script)


def install_example(folder: Path, name: str) -> Path:
    """Copy one of the repository's example plugins (a file or a folder) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    source = EXAMPLES / name
    target = folder / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target
