"""Texts per second per process, measured from the workers' own counters while they are busy.

The autoscaler reads each of its workers' ``embedq_texts_total`` every tick. Over an interval
in which the queue had texts waiting throughout, its processes were never short of work, so
texts served / seconds / processes is what one process serves: that updates a moving average,
starting from the model's figure in `embedq.ops.k8s.sizing`. Over any interval, texts served /
(rate x processes) is the pool's utilisation, which the core budget charges a pool that keeps
up with its traffic.

A reading scrapes every worker of the queue, which costs CPU on the very cores the pools compute
on: each worker renders its ``/metrics`` and the autoscaler parses them. Read every half-second
tick, that was 5.4 core-seconds in the 90 s moving workload of issue 23 (the worker parents 1.1 s
each against 0.1-0.3 s in the fixed stack, the autoscaler 2.2 s), a tenth of the time the
autoscaled stack lost to the fixed one. So a reading is taken every ``READ_EVERY_S`` while the
sizing decisions still look at the queues every tick; "texts waiting throughout" is then every
tick between two readings, not just their ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_WEIGHT = 0.3  # of the newest interval in the moving average
READ_EVERY_S = 2.0  # between two readings of the workers' counters


@dataclass
class RateMeter:
    """One queue's service rate and utilisation."""

    rate_per_process: float
    every_s: float = READ_EVERY_S
    utilisation: float = 0.0
    _counts: dict[str, float] = field(default_factory=dict)
    _at: float | None = None
    _backlogged: bool = False  # texts waited at the last reading and at every look since

    def due(self, now: float) -> bool:
        """Is it time to read the workers' counters again (always, before the first reading)?"""
        return self._at is None or now - self._at >= self.every_s

    def saw(self, backlogged: bool) -> None:
        """One look at the queue between readings: were texts waiting?"""
        self._backlogged = self._backlogged and backlogged

    def update(self, now: float, counts: dict[str, float], processes: int,
               backlogged: bool) -> None:
        """Take the counters (per worker) at ``now``; ``backlogged``: texts are waiting now.

        The rate is learnt only if texts also waited at the previous reading and at every look
        (`saw`) since: the processes were never short of work over the interval."""
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
