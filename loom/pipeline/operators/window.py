"""`window: {size: N, timeout: DUR, by: EXPR}` — batch messages N at a time (SPEC 6).

A window opens with its first message and closes when it holds `size` messages, or when
`timeout` has passed since it opened (then with fewer). With `by`, each distinct value
of EXPR has its own window. The batch body is the JSON list of the held envelopes; its
envelope (origin included) is the one of the message that closed it, or of the last
held message when the timeout closed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loom.pipeline.operators.base import (
    Args,
    Operator,
    batch_message,
    group_key,
    message_from_state,
    message_to_state,
)
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@dataclass
class _Window:
    deadline: float | None
    held: list[Message] = field(default_factory=list)


@register
class WindowOperator(Operator):
    kind = "window"
    stateful = True

    def configure(self, args: Args) -> None:
        self.size = args.count("size")
        self.timeout = args.duration("timeout")
        self.by = args.expr("by", required=False)
        self.windows: dict[str, _Window] = {}

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        group = group_key(self.by, msg)
        out: list[Message] = []
        window = self.windows.get(group)
        if window is not None and window.deadline is not None and now >= window.deadline:
            # The timeout passed before poll() got to it: close the old window first.
            out.append(batch_message(window.held[-1], window.held))
            window = None
        if window is None:
            deadline = now + self.timeout if self.timeout is not None else None
            window = self.windows[group] = _Window(deadline)
        window.held.append(msg)
        if len(window.held) >= self.size:
            out.append(batch_message(msg, window.held))
            del self.windows[group]
        return out

    def deadline(self) -> float | None:
        deadlines = [w.deadline for w in self.windows.values() if w.deadline is not None]
        return min(deadlines) if deadlines else None

    def poll(self, now: float) -> list[Message]:
        out = []
        for group, window in list(self.windows.items()):
            if window.deadline is not None and now >= window.deadline:
                out.append(batch_message(window.held[-1], window.held))
                del self.windows[group]
        return out

    def flush(self, now: float) -> list[Message]:
        out = [batch_message(w.held[-1], w.held) for w in self.windows.values()]
        self.windows.clear()
        return out

    def dump_state(self) -> Any:
        return {
            "windows": [
                {
                    "by": group,
                    "deadline": w.deadline,
                    "messages": [message_to_state(m) for m in w.held],
                }
                for group, w in self.windows.items()
            ]
        }

    def load_state(self, data: Any) -> None:
        self.windows = {
            item["by"]: _Window(item["deadline"], [message_from_state(m) for m in item["messages"]])
            for item in data["windows"]
        }
