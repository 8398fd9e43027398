"""Finding and loading `loom.yml`: --config, ./loom.yml, ./loom.yaml, $LOOM_HOME/loom.yml."""

from __future__ import annotations

import os
from pathlib import Path

from loom.errors import ConfigError, UsageError
from loom.ops.gc.retention import Retention
from loom.weave.model import Weave
from loom.weave.parse import read


def find_config(explicit: Path | None) -> Path:
    """The config file to use; UsageError listing where it looked."""
    if explicit is not None:
        # Only existence here: reading says what is wrong with a device or a FIFO.
        if not explicit.exists():
            raise UsageError(f"{explicit} does not exist")
        return explicit
    home = Path(os.environ.get("LOOM_HOME") or "~/.loom").expanduser()
    candidates = [Path("loom.yml"), Path("loom.yaml"), home / "loom.yml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise UsageError(f"no loom.yml found (looked at {looked}); pass --config FILE")


def load(explicit: Path | None) -> Weave:
    """Read and validate the weave; its `home:` applies when LOOM_HOME is not set."""
    weave = read(find_config(explicit), os.environ)
    if weave.home and not os.environ.get("LOOM_HOME"):
        os.environ["LOOM_HOME"] = str(Path(weave.home).expanduser())
    return weave


def retention(explicit: Path | None) -> Retention:
    """The `gc.retention` of the weave (`--config`, ./loom.yml, ...), or the defaults when
    there is no loom.yml; ConfigError naming the file and the first bad key."""
    if explicit is None:
        try:
            find_config(None)
        except UsageError:
            return Retention()
    weave = load(explicit)
    try:
        return Retention.from_mapping(weave.retention)
    except ValueError as exc:
        raise ConfigError(f"{weave.path}: {exc}") from None
