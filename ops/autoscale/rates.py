"""Texts per second per process, measured from the workers' own counters while they are busy.

The autoscaler reads each of its workers' ``embedq_texts_total`` every tick. Over an interval
in which the queue had texts waiting throughout, its processes were never short of work, so
texts served / seconds / processes is what one process serves: that updates a moving average,
starting from the model's figure in `embedq.ops.k8s.sizing`. Over any interval, texts served /
(rate x processes) is the pool's utilisation, which the core budget charges a pool that keeps
up with its traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_WEIGHT = 0.3  # of the newest interval in the moving average


@dataclass
class RateMeter:
    """One queue's service rate and utilisation."""

    rate_per_process: float
    utilisation: float = 0.0
    _counts: dict[str, float] = field(default_factory=dict)
    _at: float | None = None
    _backlogged: bool = False

    def update(self, now: float, counts: dict[str, float], processes: int,
               backlogged: bool) -> None:
        """Take the counters (per worker) at ``now``; ``backlogged``: texts were waiting."""
        served = sum(max(0.0, value - self._counts.get(worker, 0.0))
                     for worker, value in counts.items())
        if self._at is not None and now > self._at and processes > 0:
            elapsed = now - self._at
            if backlogged and self._backlogged and served > 0:
                measured = served / elapsed / processes
                self.rate_per_process += _WEIGHT * (measured - self.rate_per_process)
            self.utilisation = min(1.0, served / elapsed / (self.rate_per_process * processes))
        elif processes == 0:
            self.utilisation = 0.0
        self._counts, self._at, self._backlogged = dict(counts), now, backlogged
