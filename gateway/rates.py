"""Token buckets: how many texts a gateway key may send, per second and at once.

A bucket holds up to ``burst`` texts and refills at ``rate`` texts per second; a request takes
as many tokens as it has texts, or is refused whole with the seconds until it would fit. The
budget is per gateway process: behind a load balancer with N gateways a key gets up to N times
its rate, which is why the rate is a guard against a runaway client, not a billing meter.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """One key's budget of texts."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, texts: int) -> float:
        """Take ``texts`` tokens and return 0.0, or take none and return the seconds to wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if texts <= self._tokens:
                self._tokens -= texts
                return 0.0
            return (texts - self._tokens) / self.rate


def retry_after(seconds: float) -> int:
    """Whole seconds for a ``Retry-After`` header: never 0, so a client does wait."""
    return max(1, math.ceil(seconds))
