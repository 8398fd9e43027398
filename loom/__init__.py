"""loom: a transparent agent runtime and pipe-and-operator stream engine.

The library API is small and file-based, so scripts can do what the CLI does::

    import loom
    loom.send("summarizer", "text to summarise")
    for msg in loom.read_outbox("summarizer"):
        print(msg.body)
"""

from __future__ import annotations

# Not typing's: `loom --help` does not import typing (loom.cli.fast). mypy takes it as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from loom.api import read_outbox, send
    from loom.store.message import Message, new_message

__all__ = ["Message", "new_message", "read_outbox", "send"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Loaded on first use, so `loom --help` does not pay for the library's imports.
    if name in ("send", "read_outbox"):
        from loom import api

        return getattr(api, name)
    if name in ("Message", "new_message"):
        from loom.store import message

        return getattr(message, name)
    raise AttributeError(name)
