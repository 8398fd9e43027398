"""`${VAR}` and `${VAR:-default}` in loom.yml values (SPEC 9).

Expansion happens after YAML parsing, on string values only, so a variable can never
inject YAML syntax: whatever it holds stays one plain string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Return the expanded text and the names of unset variables that had no default."""
    missing: list[str] = []

    def substitute(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    return VARIABLE.sub(substitute, text), missing
