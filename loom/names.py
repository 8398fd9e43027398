"""Validation of names before they become paths (SPEC 3), and of environment entries
before they become lines of an agent's `env` file."""

from __future__ import annotations

import re

from loom.errors import InvalidName

NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
MAX_NAME = 64
# A pipe instance wired between two agents: <pipe>~<source>→<dest> (SPEC 3).
INSTANCE_RE = re.compile(r"([a-z][a-z0-9-]*)~([a-z][a-z0-9-]*)→([a-z][a-z0-9-]*)")
# What a keyboard types for the arrow: `p~a->b` names the same instance as `p~a→b`.
TYPED_ARROW = "->"
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The `env` file is one KEY=VALUE per line: a newline in a value would add a variable of
# the sender's choosing (OPENAI_BASE_URL, say), and no other control character is text.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_name(name: str, what: str = "name") -> str:
    """Return `name` if it is a valid agent or pipe name, else raise InvalidName."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        shown = repr(name)[:80]
        raise InvalidName(
            f"invalid {what} {shown}: use lowercase letters, digits and '-', "
            f"starting with a letter, at most {MAX_NAME} characters"
        )
    return name


def canonical_process_name(name: str) -> str:
    """`name` with a typed `->` of a pipe instance name written as the canonical `→`."""
    if isinstance(name, str) and "~" in name:
        return name.replace(TYPED_ARROW, "→")
    return name


def validate_process_name(name: str) -> str:
    """Return the canonical form of an agent/pipe name or a pipe instance name
    `<pipe>~<src>→<dst>` (also accepted as `<pipe>~<src>-><dst>`); raise InvalidName."""
    if isinstance(name, str) and "~" in name:
        name = canonical_process_name(name)
        m = INSTANCE_RE.fullmatch(name)
        if m and all(len(part) <= MAX_NAME for part in m.groups()):
            return name
        shown = repr(name)[:80]
        raise InvalidName(
            f"invalid pipe instance name {shown}: expected <pipe>~<source>→<dest> (or ->)"
        )
    return validate_name(name)


def instance_name(pipe: str, source: str, dest: str) -> str:
    """The name of the pipe instance that carries `source`'s output to `dest`."""
    return f"{validate_name(pipe)}~{validate_name(source)}→{validate_name(dest)}"


def env_entry_problem(key: str, value: str) -> str | None:
    """Why `key=value` cannot be an environment entry of an agent, or None when it can.

    Keys are shell-style names (no '=', not empty); neither part holds a control
    character. The CLI's --env and a weave's `env:` both ask this one question.
    """
    if not ENV_KEY.fullmatch(key):
        return (
            f"invalid environment variable name {key!r}: use letters, digits and '_', "
            "not starting with a digit"
        )
    if CONTROL.search(value):
        return f"the value of {key} holds a control character (such as a newline): {value!r}"
    return None
