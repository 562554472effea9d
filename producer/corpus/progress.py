"""Progress of a corpus job: a snapshot after every block, shown as a bar or as log lines.

Parquet inputs know their row count, so progress is in rows; the others are measured in bytes
of the file read (a row count would need a pass of its own). The rate is taken over the last
30 seconds, so the ETA follows a job that speeds up or slows down.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from tqdm import tqdm

_log = structlog.get_logger("embedq.corpus")
_RATE_WINDOW_S = 30.0


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Where a job is: rows resolved (embedded or failed) and how far through the input."""

    rows: int
    rows_total: int | None
    bytes_read: int
    bytes_total: int
    failed: int
    cached: int
    rows_per_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        if self.rows_total is not None:
            return self.rows / self.rows_total if self.rows_total else 1.0
        return self.bytes_read / self.bytes_total if self.bytes_total else 1.0


class ProgressMeter:
    """Turns counters into `JobProgress` snapshots with a moving rate and an ETA."""

    def __init__(self, rows_total: int | None, bytes_total: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rows_total = rows_total
        self._bytes_total = bytes_total
        self._clock = clock
        self._samples: deque[tuple[float, int, float]] = deque()

    def snapshot(self, rows: int, bytes_read: int, failed: int, cached: int) -> JobProgress:
        now = self._clock()
        progress = JobProgress(rows, self._rows_total, bytes_read, self._bytes_total, failed,
                               cached, 0.0, None)
        self._samples.append((now, rows, progress.fraction))
        while len(self._samples) > 2 and now - self._samples[0][0] > _RATE_WINDOW_S:
            self._samples.popleft()
        then, rows_then, fraction_then = self._samples[0]
        if now - then <= 0 or progress.fraction <= fraction_then:
            return progress
        per_s = (progress.fraction - fraction_then) / (now - then)
        return JobProgress(rows, self._rows_total, bytes_read, self._bytes_total, failed, cached,
                           (rows - rows_then) / (now - then), (1 - progress.fraction) / per_s)


class ProgressDisplay:
    """A tqdm bar on a terminal, a log line every 30 seconds elsewhere (a scheduler's log);
    ``enabled`` True forces the bar, False shows nothing."""

    def __init__(self, enabled: bool | None, *, interval_s: float = 30.0) -> None:
        self._bar_wanted = sys.stderr.isatty() if enabled is None else enabled
        self._log_wanted = enabled is None
        self._interval_s = interval_s
        self._last = 0.0
        self._bar: tqdm | None = None

    def __call__(self, progress: JobProgress) -> None:
        if self._bar_wanted:
            self._draw(progress)
        elif self._log_wanted and time.monotonic() - self._last >= self._interval_s:
            self._last = time.monotonic()
            _log.info("corpus progress", rows=progress.rows, rows_total=progress.rows_total,
                      percent=round(100 * progress.fraction, 1), failed=progress.failed,
                      rows_per_s=round(progress.rows_per_s, 1),
                      eta_s=None if progress.eta_s is None else round(progress.eta_s))

    def _draw(self, progress: JobProgress) -> None:
        if time.monotonic() - self._last < 0.2 and progress.fraction < 1:
            return
        self._last = time.monotonic()
        by_rows = progress.rows_total is not None
        if self._bar is None:
            self._bar = tqdm(total=progress.rows_total if by_rows else progress.bytes_total,
                             unit="row" if by_rows else "B", unit_scale=True, file=sys.stderr)
        self._bar.n = progress.rows if by_rows else progress.bytes_read
        self._bar.set_postfix(failed=progress.failed, rows_s=round(progress.rows_per_s),
                              refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


ProgressCallback = Callable[[JobProgress], None]
