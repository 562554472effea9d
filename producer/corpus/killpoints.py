"""Named points where a test can make a corpus job SIGKILL itself, to test its resume for real.

A kill can land anywhere; the points that matter are the ones between two durable writes
(a part, the output, the errors file, the job record), because each leaves a different state on
disk for the next run to finish. Timing a signal from outside cannot hit "after the last part and
before the merge" reliably, so the job names those points and a test picks one:

    EMBEDQ_TEST_SIGKILL_AT=before-merge embedq embed --input ... --output ...

The process then kills itself with SIGKILL (no handler, no ``finally``: exactly a ``kill -9``)
when it reaches that point. Only the exact name of a point in `POINTS` does anything
(``after-part-<end>`` names the part that ends at row ``<end>``); the variable is read at the
point, never at import, and nothing but a test sets it.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "EMBEDQ_TEST_SIGKILL_AT"
POINTS = (
    "before-parts",  # the job record is written, no part yet
    "after-part-",  # + the part's end row: that part is durable, the next not begun
    "before-merge",  # every row is in a part; no final file yet
    "merge-partial",  # the output's temporary file is half written
    "vectors-published",  # .npy only: the vectors are in place, the ids file not yet
    "output-published",  # the output (and its ids) in place; the errors file not yet
    "merged",  # every final file in place; the job record still says running
    "completed",  # the record says complete; the parts are not removed yet
)


def reached(point: str) -> None:
    """SIGKILL this process if a test asked to be killed at ``point``."""
    if os.environ.get(VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)
