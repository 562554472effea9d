"""One log line per second for each kind of "come back later" refusal, however many there were.

Under a spike the gateway refuses hundreds of requests a second (429 overloaded, 503 no live
worker). A JSON line for each would cost the gateway a tenth of its CPU exactly when it has
none to spare, and would bury the log; the Prometheus counters already count every one. So the
first refusal of each (use case, code) is logged whole, and later ones at most once per
``interval_s``, each line saying how many refusals it stands for (``refused``). Errors a client
must fix (400, 401, 403, 404, 413) are still logged one by one: they are rare, and each names a
request worth finding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class RefusalSampler:
    """Decides which refusals to log; not thread-safe (the gateway's event loop owns it)."""

    interval_s: float = 1.0
    _last: dict[tuple[str | None, str], float] = field(default_factory=dict)
    _held: dict[tuple[str | None, str], int] = field(default_factory=dict)

    def take(self, use_case: str | None, code: str) -> int:
        """How many refusals of this kind the caller's log line stands for (itself and those
        held back since the last line), or 0 when this one is only counted."""
        key = (use_case, code)
        now = time.monotonic()
        held = self._held.get(key, 0) + 1
        if now - self._last.get(key, -self.interval_s) < self.interval_s:
            self._held[key] = held
            return 0
        self._last[key] = now
        self._held[key] = 0
        return held
