"""Every error loom raises on purpose, with the exit code the CLI maps it to (SPEC 10)."""

from __future__ import annotations

import errno

# The OSErrors that mean "the disk takes no more writes": they pass when an operator
# frees space (or remounts), so long-running processes wait them out instead of dying.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is an OSError of the disk-full class (ENOSPC, EDQUOT, EROFS)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def describe_os_error(exc: OSError) -> str:
    """One sentence for the user about a failed file operation, naming the path."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device writing{where}; free space and retry"
    if exc.errno == errno.EROFS:
        return f"read-only file system writing{where}; remount it read-write and retry"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on{where}; check the owner and mode of that path"
    reason = exc.strerror or str(exc)
    return f"{reason[:1].lower()}{reason[1:]}{':' if where else ''}{where}"


class LoomError(Exception):
    """A failure worth one clear sentence to the user; exit code 1."""

    exit_code = 1


class UsageError(LoomError):
    """The user asked for something malformed; exit code 2."""

    exit_code = 2


class InvalidName(UsageError):
    """A name that must not become a path (SPEC 3)."""


class NotFound(LoomError):
    """An agent, pipe or message that does not exist."""


class UnreadableMessage(LoomError):
    """A .msg file that is not a valid message (SPEC 2); it gets quarantined."""


class UnsupportedVersion(LoomError):
    """A message written by a newer loom; the consumer stops (SPEC 2)."""


class NeedsOperator(LoomError):
    """A file the process owns is unusable (a pipe's operator state): it stops and stays
    stopped until the operator moves the file away, since a restart would meet it again.

    Under the supervisor the child exits 78 (EX_CONFIG), as for a message from a newer
    loom: the reason goes into the crash record and the process is not restarted.
    """


class ConfigError(UsageError):
    """A definition (pipe, weave, route) that does not validate."""


class MissingApiKey(UsageError):
    """A provider needs a key from the environment that is not set."""

    def __init__(self, variable: str, model: str) -> None:
        super().__init__(
            f"{variable} is not set; model '{model}' needs it. "
            f"Export {variable} and start the agent again."
        )
        self.variable = variable


class ProviderError(LoomError):
    """A failed call to a model provider.

    `error_type` is the stable label written to `.error.json` and logs; `transient`
    decides whether the runner retries (SPEC 5).
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        # How many calls were made before giving up; the runner fills it in.
        self.attempts = 1
