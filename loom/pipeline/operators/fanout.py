"""`fanout: [DEST, ...]` — one copy of the message per destination, each with its own `to`."""

from __future__ import annotations

from loom.pipeline.operators.base import Args, Operator
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@register
class FanoutOperator(Operator):
    kind = "fanout"
    primary = "to"

    def configure(self, args: Args) -> None:
        self.dests = args.names("to")

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        return [msg.with_to((dest,)) for dest in self.dests]
