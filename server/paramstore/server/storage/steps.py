"""The named steps of the commit protocol, and the test-only hook that kills the server at one.

Random kills rarely land inside a commit, so the crash suite names a step in
`PARAMSTORE_CRASH_AT`; the server then writes the step's name to `PARAMSTORE_CRASH_MARK` (so the
suite can prove it was reached) and sends itself SIGKILL there. With `PARAMSTORE_CRASH_ARMED`
too, only once the file it names exists (so one server can first make the stores the script
needs). Unset, `reached` costs one compare.

The split-brain test pauses a replica instead: at the step named in `PARAMSTORE_PAUSE_AT`, once
the file `PARAMSTORE_PAUSE_ARMED` exists, the server removes it, writes the step's name to
`PARAMSTORE_PAUSE_MARK` and stops itself with SIGSTOP, until the test sends SIGCONT.
"""

from __future__ import annotations

import os
import signal
import threading

COMMIT_STEPS = (
    "create.committed",
    "snapshot.verified",
    "snapshot.data-written",
    "snapshot.committed",
    "retention.record-deleted",
    "retention.data-removed",
    "delete-snapshot.record-deleted",
    "tag.committed",
    "tag.superseded-removed",
    "untag.committed",
    "untag.superseded-removed",
    "retention-policy.committed",
    "retention-policy.superseded-removed",
    "delete.tombstoned",
    "delete.data-removed",
    "import.data-written",
    "import.verified",
    "import.snapshot-recorded",
    "import.committed",
)
# A replica's only: its ownership of the store checked, its fenced commit not yet sent.
LEASE_CHECKED = "commit.lease-checked"

_CRASH_AT = os.environ.get("PARAMSTORE_CRASH_AT")
_PAUSE_AT = os.environ.get("PARAMSTORE_PAUSE_AT")


def reached(step: str) -> None:
    """Mark that the protocol has done `step`; the crash hook kills the process here if asked."""
    if step == _CRASH_AT and _armed("PARAMSTORE_CRASH_ARMED", unset=True):
        _mark("PARAMSTORE_CRASH_MARK", step)
        os.kill(os.getpid(), signal.SIGKILL)
    if step == _PAUSE_AT and _armed("PARAMSTORE_PAUSE_ARMED", unset=False):
        _mark("PARAMSTORE_PAUSE_MARK", step)
        # Sent to this thread, the stop takes it before it runs another line; sent to the
        # process, another thread may take it while this one goes on for a moment.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def _armed(variable: str, unset: bool) -> bool:
    """Whether a hook fires: `unset` when `variable` is not set; else once the file it names
    exists, which is removed (so the hook fires once)."""
    path = os.environ.get(variable)
    if path is None:
        return unset
    try:
        os.remove(path)
    except OSError:
        return False
    return True


def _mark(variable: str, step: str) -> None:
    mark = os.environ.get(variable)
    if mark:
        with open(mark, "w") as file:
            file.write(step)
