"""`supervisor.json`: what the running supervisor says about itself, for `loom supervisor
status` and for the CLI's check that it runs with the shell's settings.

The settings are recorded as salted hashes, one per variable, never as values: the file
tells which variables differ from a shell's, not what they hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom import settings
from loom.errors import LoomError
from loom.store import atomic
from loom.store.files import FIELD_LIMIT, load_json, read_bounded

RECORD_FILE = "supervisor.json"
ON_DEMAND = "on-demand"
SERVICE = "run"
# What a child's provider calls depend on besides loom's own settings: the providers'
# keys and base URLs (any provider, a plugin's too, by these name patterns) and the
# proxy and certificate variables the HTTP client reads; and a cluster's NATS credentials.
_PROVIDER_PREFIXES = ("OPENAI_", "ANTHROPIC_", "OPENROUTER_", "OLLAMA_", "LOOM_NATS_")
_PROVIDER_SUFFIXES = ("_API_KEY", "_BASE_URL")
_NETWORK = frozenset(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    for name in (base, base.lower())
) | {"SSL_CERT_FILE", "SSL_CERT_DIR"}
# LOOM_HOME is the same by construction: the supervisor was found through it.
_SETTINGS = frozenset(s.name for s in settings.ALL) - {settings.HOME.name}


def relevant(name: str) -> bool:
    """Whether the variable `name` changes what a supervised process does."""
    return (
        name in _SETTINGS
        or name in _NETWORK
        or name.startswith(_PROVIDER_PREFIXES)
        or name.endswith(_PROVIDER_SUFFIXES)
    )


def fingerprint(env: Mapping[str, str], salt: str) -> dict[str, str]:
    """A salted hash of each relevant variable that is set (blank counts as unset)."""
    out = {}
    for name in sorted(env):
        value = env[name]
        if relevant(name) and value.strip():
            digest = hashlib.sha256(f"{salt}\0{name}\0{value}".encode()).hexdigest()
            out[name] = digest[:32]
    return out


@dataclass(frozen=True)
class Record:
    """One supervisor's account of itself."""

    pid: int
    mode: str  # ON_DEMAND | SERVICE
    started_at: str
    children: int
    salt: str
    env: dict[str, str]

    def differs(self, env: Mapping[str, str]) -> list[str]:
        """The names of the relevant variables whose value in `env` is not the supervisor's."""
        mine = fingerprint(env, self.salt)
        return sorted(n for n in set(mine) | set(self.env) if mine.get(n) != self.env.get(n))

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "mode": self.mode,
            "started_at": self.started_at,
            "children": self.children,
            "salt": self.salt,
            "env": self.env,
        }


def new(mode: str, started_at: str, env: Mapping[str, str] | None = None) -> Record:
    """The record of this process, as a supervisor in `mode`, with a fresh salt."""
    salt = secrets.token_hex(8)
    environment = os.environ if env is None else env
    return Record(os.getpid(), mode, started_at, 0, salt, fingerprint(environment, salt))


def write(home: Path, record: Record) -> None:
    atomic.write_text(home / RECORD_FILE, json.dumps(record.to_json(), sort_keys=True) + "\n")


def read(home: Path) -> Record | None:
    """The record in `supervisor.json`, or None when absent or not one loom wrote."""
    try:
        data = load_json(read_bounded(home / RECORD_FILE, FIELD_LIMIT, RECORD_FILE, follow=False))
        env = data["env"]
        record = Record(
            pid=int(data["pid"]),
            mode=str(data["mode"]),
            started_at=str(data["started_at"]),
            children=int(data["children"]),
            salt=str(data["salt"]),
            env={str(k): str(v) for k, v in env.items()},
        )
    except (OSError, ValueError, LoomError, KeyError, TypeError, AttributeError):
        return None
    return record


def remove(home: Path, pid: int) -> None:
    """Remove the record if it is the one of `pid` (a successor's is left alone)."""
    found = read(home)
    if found is not None and found.pid == pid:
        try:
            (home / RECORD_FILE).unlink()
        except FileNotFoundError:
            pass
