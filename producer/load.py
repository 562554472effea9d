"""How long the work already queued on a route would take: the producer's view, for shedding.

Refusing at once what cannot be answered in time is cheaper for everyone than queueing it: the
caller learns at once (and can retry elsewhere or later), and the workers never spend a forward
pass on an answer nobody reads. The estimate needs no extra round trip: every push of the sender
thread adds its texts to the queue's backlog counter (``INCRBY`` answers with the new total) and,
when the last reading is stale, reads the consumers' published service rates (texts per second
while busy) and the live set in the same pipeline, and sums the rates of the live ones. Between
readings the backlog is assumed to drain at that rate, so a refusal never outlives the overload
it was made in.

The queue's counter drops texts when a worker claims them, but a claimed batch is still ahead of
the next request until it is computed (two pool processes holding a claim of 64 short texts each
are a quarter of a second of work). So the work ahead is at least what this process itself
still waits for (`embedq.producer.outstanding`); without it, a gateway admitted up to four times
the queueing time it meant to, and its clients' connection pools ran dry.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

STALE_S = 0.1  # a reading older than this is refreshed by the next push (or the sender's tick)


@dataclass(frozen=True, slots=True)
class Reading:
    """One queue's load at one moment."""

    backlog: int  # interactive texts waiting
    rate: float  # texts per second the live consumers serve together (0: unknown)
    consumers: int  # live consumer processes
    at: float  # time.monotonic() of the reading


class LoadBook:
    """The last reading of each queue; shared by callers' threads and the sender (one lock)."""

    def __init__(self) -> None:
        self._readings: dict[str, Reading] = {}
        self._lock = threading.Lock()

    def record(self, queue: str, *, backlog: int, rates: Sequence[bytes | str | float] | None,
               consumers: int | None) -> None:
        """Store what a push learned (``rates``/``consumers`` None: keep the last ones)."""
        now = time.monotonic()
        with self._lock:
            last = self._readings.get(queue)
            rate = sum(float(r) for r in rates) if rates is not None else (
                last.rate if last else 0.0)
            live = consumers if consumers is not None else (last.consumers if last else 0)
            self._readings[queue] = Reading(max(0, backlog), rate, live, now)

    def reading(self, queue: str) -> Reading | None:
        """The last reading of ``queue``, if any."""
        with self._lock:
            return self._readings.get(queue)

    def stale(self, queue: str) -> bool:
        """True when the next push should read the rates and consumers again."""
        last = self.reading(queue)
        return last is None or time.monotonic() - last.at > STALE_S

    def wait_s(self, queue: str, own_texts: int = 0) -> float | None:
        """Seconds the work ahead of a new request still needs, or None while unknown: the
        queued interactive texts (drained at the measured rate since the reading), or the
        texts this process itself still waits for (``own_texts``: queued or being computed),
        whichever is more."""
        last = self.reading(queue)
        if last is None or last.rate <= 0:
            return None
        left = max(last.backlog - last.rate * (time.monotonic() - last.at), own_texts)
        return max(0.0, left) / last.rate


def live_rates(rates: dict[bytes, bytes], live: list[bytes]) -> tuple[list[bytes], int]:
    """The published rates of the consumers that are live, and how many are: a consumer that
    stopped or died leaves its last rate behind until it is swept, and counting it would make
    the pool look faster than it is (after every restart or scale-down) and admit what cannot
    be served in time."""
    alive = set(live)
    return [rate for consumer, rate in rates.items() if consumer in alive], len(alive)


def refuse_after(wait_s: float | None, remaining_s: float, headroom: float) -> float | None:
    """None to admit a request with ``remaining_s`` until its deadline, else how long to wait
    before trying again (at least a second, as ``Retry-After`` counts whole seconds)."""
    if wait_s is None or wait_s <= remaining_s * headroom:
        return None
    return max(1.0, math.ceil(wait_s - remaining_s * headroom))
