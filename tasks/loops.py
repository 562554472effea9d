"""The one way embedq's background loops survive: back off on outages, log a surprise once, go on.

Four loops run unattended (the producer's sender and reply listener, each worker's consumers,
and the guarded optional Redis calls). A loop that dies silently is the worst failure a
producer can have: every later call times out as "busy or slow". So each turn of a loop runs
through `Loop.turn`: a Redis or OS error is an outage (logged once when it starts and once when
it ends, retried with jittered exponential backoff); any other exception is a bug or a bad
input (logged with its traceback the first time its kind is seen, then counted), and the loop
goes on after the same backoff. Whoever the failed turn concerned is told by the turn itself.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

log = structlog.get_logger(__name__)
OUTAGES: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
# The jitter's own generator: a background thread drawing from the module-level one would move
# the state of an application that seeded `random` for reproducible runs (and Hypothesis tells
# such a test that its strategy used `random`).
_jitter = random.Random()


@dataclass
class Backoff:
    """Doubling waits with jitter, from ``first_s`` up to ``max_s``; `reset` after a success."""

    first_s: float = 0.05
    max_s: float = 2.0
    current_s: float = field(default=0.0, init=False)

    def next(self) -> float:
        """The next wait, in seconds (jittered down to half, so peers do not retry in step)."""
        self.current_s = min(self.max_s, max(self.first_s, self.current_s * 2))
        return self.current_s * _jitter.uniform(0.5, 1.0)

    def reset(self) -> None:
        """Back to the first wait."""
        self.current_s = 0.0


@dataclass(eq=False)
class Loop:
    """Runs turns of one background loop; ``what`` names it in logs, ``context`` adds fields."""

    what: str
    backoff: Backoff = field(default_factory=Backoff)
    context: dict[str, Any] = field(default_factory=dict)
    down_since: float | None = field(default=None, init=False)
    outage: BaseException | None = field(default=None, init=False)  # while it lasts
    surprises: int = field(default=0, init=False)
    _seen: set[str] = field(default_factory=set, init=False)

    def turn(self, step: Callable[[], object], stopping: threading.Event) -> bool:
        """Run ``step`` once; on failure log as above and wait out the backoff (returning early
        if ``stopping`` is set). True when the step succeeded."""
        try:
            step()
        except OUTAGES as exc:
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.warning(f"{self.what}_unavailable", error=repr(exc),
                            note="retrying with backoff; nothing is lost meanwhile",
                            **self.context)
            self.outage = exc
            stopping.wait(self.backoff.next())
            return False
        except Exception as exc:  # a bug or a bad input: this turn's work fails, the loop lives
            self.surprises += 1
            kind = type(exc).__name__
            if kind not in self._seen:
                self._seen.add(kind)
                log.exception(f"{self.what}_error", error=repr(exc), **self.context,
                              note="the loop goes on; later errors of this kind are counted")
            stopping.wait(self.backoff.next())
            return False
        if self.down_since is not None:
            log.info(f"{self.what}_recovered",
                     down_s=round(time.monotonic() - self.down_since, 3), **self.context)
            self.down_since = None
        self.outage = None
        self.backoff.reset()
        return True
