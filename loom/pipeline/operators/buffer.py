"""`buffer: {until: EXPR, timeout: DUR}` — hold messages until EXPR over them is true (SPEC 6).

EXPR is evaluated over the JSON list of the held bodies (the new message included);
when it is true the held messages leave as one batch (body: the JSON list of their
envelopes, envelope: the message that completed it). When `timeout` passes since the
first held message, or the input ends, the batch leaves anyway and its list ends with
one extra element, the marker `{"_buffer_timeout": true}`.
"""

from __future__ import annotations

from typing import Any

from loom.pipeline.expressions import is_truthy, parse_body
from loom.pipeline.operators.base import (
    Args,
    Operator,
    batch_message,
    message_from_state,
    message_to_state,
)
from loom.pipeline.operators.registry import register
from loom.store.message import Message

TIMEOUT_MARKER: dict[str, Any] = {"_buffer_timeout": True}


@register
class BufferOperator(Operator):
    kind = "buffer"
    stateful = True

    def configure(self, args: Args) -> None:
        self.until = args.required_expr("until")
        self.timeout = args.duration("timeout")
        self.held: list[Message] = []
        self._bodies: list[Any] = []
        self._deadline: float | None = None

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        out: list[Message] = []
        if self.held and self._deadline is not None and now >= self._deadline:
            out.extend(self.poll(now))
        bodies = [*self._bodies, parse_body(msg.body)]
        # Evaluate before changing anything, so a failing expression leaves the buffer as it was.
        done = is_truthy(self.until.search(bodies, msg))
        held = [*self.held, msg]
        if done:
            out.append(batch_message(msg, held))
            self._reset()
        else:
            if not self.held and self.timeout is not None:
                self._deadline = now + self.timeout
            self.held, self._bodies = held, bodies
        return out

    def _reset(self) -> None:
        self.held, self._bodies, self._deadline = [], [], None

    def deadline(self) -> float | None:
        return self._deadline if self.held else None

    def poll(self, now: float) -> list[Message]:
        if not self.held or self._deadline is None or now < self._deadline:
            return []
        return self.flush(now)

    def flush(self, now: float) -> list[Message]:
        if not self.held:
            return []
        batch = batch_message(self.held[-1], self.held, TIMEOUT_MARKER)
        self._reset()
        return [batch]

    def dump_state(self) -> Any:
        return {"deadline": self._deadline, "messages": [message_to_state(m) for m in self.held]}

    def load_state(self, data: Any) -> None:
        self.held = [message_from_state(m) for m in data["messages"]]
        self._bodies = [parse_body(m.body) for m in self.held]
        self._deadline = data["deadline"]
