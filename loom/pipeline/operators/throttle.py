"""`throttle: {max: N, per: DUR, by: EXPR}` — forward at most N messages per period (SPEC 6).

The period slides: a message may pass when fewer than N passed in the last `per`.
The others wait in a backlog (in state) and are released in arrival order as room
frees up; a new message never overtakes the backlog. With `by`, each value of EXPR is
throttled on its own. The end of input does not release the backlog early: `loom pipe
run` keeps the rate and waits for it to drain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loom.pipeline.operators.base import (
    Args,
    Operator,
    group_key,
    message_from_state,
    message_to_state,
)
from loom.pipeline.operators.registry import register
from loom.store.message import Message


@dataclass
class _Lane:
    sent: list[float] = field(default_factory=list)
    backlog: list[Message] = field(default_factory=list)


@register
class ThrottleOperator(Operator):
    kind = "throttle"
    stateful = True

    def configure(self, args: Args) -> None:
        self.max = args.count("max")
        per = args.duration("per", required=True)
        assert per is not None
        self.per = per
        self.by = args.expr("by", required=False)
        self.lanes: dict[str, _Lane] = {}

    def _release(self, lane: _Lane, now: float) -> list[Message]:
        lane.sent = [t for t in lane.sent if t > now - self.per]
        out: list[Message] = []
        while lane.backlog and len(lane.sent) < self.max:
            lane.sent.append(now)
            out.append(lane.backlog.pop(0))
        return out

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        group = group_key(self.by, msg)
        lane = self.lanes.setdefault(group, _Lane())
        out = self._release(lane, now)
        if not lane.backlog and len(lane.sent) < self.max:
            lane.sent.append(now)
            out.append(msg)
        else:
            lane.backlog.append(msg)
        return out

    def deadline(self) -> float | None:
        waits = [
            lane.sent[0] + self.per for lane in self.lanes.values() if lane.backlog and lane.sent
        ]
        return min(waits) if waits else None

    def poll(self, now: float) -> list[Message]:
        out: list[Message] = []
        for group, lane in list(self.lanes.items()):
            out.extend(self._release(lane, now))
            if not lane.backlog and not lane.sent:
                del self.lanes[group]
        return out

    def dump_state(self) -> Any:
        return {
            "lanes": [
                {"by": g, "sent": lane.sent, "backlog": [message_to_state(m) for m in lane.backlog]}
                for g, lane in self.lanes.items()
            ]
        }

    def load_state(self, data: Any) -> None:
        self.lanes = {
            item["by"]: _Lane(list(item["sent"]), [message_from_state(m) for m in item["backlog"]])
            for item in data["lanes"]
        }
