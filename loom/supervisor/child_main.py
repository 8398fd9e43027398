"""What the supervisor runs for a child: `python -m loom.supervisor.child_main KIND NAME`.

The same work as `loom agent serve NAME` / `loom pipe serve NAME`, without loading the
CLI framework, so a restart costs less start-up time (SPEC 8 restart time).
"""

from __future__ import annotations

import sys

from loom.cluster.share import bridged
from loom.errors import LoomError, NeedsOperator, UnsupportedVersion
from loom.store import home as homes
from loom.supervisor.policy import UPGRADE_EXIT


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("agents", "pipes"):
        print("usage: python -m loom.supervisor.child_main agents|pipes NAME", file=sys.stderr)
        return 2
    kind, name = argv
    homes.warned_elsewhere()
    try:
        if kind == "pipes" and bridged(name) is not None:
            from loom.cluster.bridge import serve as serve_bridge  # only in a cluster

            serve_bridge(name)
        elif kind == "agents":
            from loom.agent import agents

            agents.serve(agents.detached_session(name), [])
        else:
            from loom.pipeline.process import serve

            serve(name)
    except (UnsupportedVersion, NeedsOperator) as exc:
        # The consumer has put the message back (or stopped on a file of its own) and
        # written `error`; the supervisor must leave it until the operator upgrades
        # loom, removes the message or moves the file away.
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        return UPGRADE_EXIT
    except LoomError as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
