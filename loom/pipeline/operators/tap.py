"""`tap: LABEL` — copy the message somewhere you can look at it; the message continues.

In a queued pipe the copy is a full message file `state/tap/LABEL/<item>.msg` (named
after the input file and output position, so a step re-run after a crash overwrites
instead of duplicating). In memory (`loom pipe run`) the copy is one line on stderr,
`tap LABEL: <envelope JSON>`, so stdout keeps carrying only results.
"""

from __future__ import annotations

from loom.errors import InvalidName
from loom.names import validate_name
from loom.pipeline.errors import ArgError
from loom.pipeline.expressions import compact_json
from loom.pipeline.operators.base import Args, Operator, envelope_dict
from loom.pipeline.operators.registry import register
from loom.store import atomic
from loom.store.message import Message


@register
class TapOperator(Operator):
    kind = "tap"
    primary = "label"

    def configure(self, args: Args) -> None:
        label = args.text("label")
        try:
            self.tap_label = validate_name(label, "tap label")
        except InvalidName as exc:
            raise ArgError("label", str(exc), args.line("label")) from None

    def process(self, msg: Message, key: str, now: float) -> list[Message]:
        if self.ctx.state_dir is None:
            print(
                f"tap {self.tap_label}: {compact_json(envelope_dict(msg))}",
                file=self.ctx.stderr,
                flush=True,
            )
            return [msg]
        folder = self.ctx.state_dir / "tap" / self.tap_label
        atomic.make_private_dir(folder)
        atomic.write_text(folder / f"{key}.msg", compact_json(envelope_dict(msg)))
        return [msg]
