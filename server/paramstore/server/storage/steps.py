"""The named steps of the commit protocol, and the test-only hook that kills the server at one.

Random kills rarely land inside a commit, so the crash suite names a step in
`PARAMSTORE_CRASH_AT`; the server then writes the step's name to `PARAMSTORE_CRASH_MARK` (so the
suite can prove it was reached) and sends itself SIGKILL there. Unset, `reached` costs one compare.
"""

from __future__ import annotations

import os
import signal

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

_CRASH_AT = os.environ.get("PARAMSTORE_CRASH_AT")


def reached(step: str) -> None:
    """Mark that the protocol has done `step`; the crash hook kills the process here if asked."""
    if step == _CRASH_AT:
        mark = os.environ.get("PARAMSTORE_CRASH_MARK")
        if mark:
            with open(mark, "w") as file:
                file.write(step)
        os.kill(os.getpid(), signal.SIGKILL)
