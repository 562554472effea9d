"""How many worker processes each queue should have: pure functions of what was observed.

A pool is a set of one-process, one-thread workers of one queue, so its size is the cores it
computes on. Every tick the runner observes each queue (`Observation`) and keeps a little memory
of it (`PoolMemory`); `decide` turns both into a size per queue:

* a queue with work grows until its backlog drains within ``target_drain_s`` (texts waiting /
  measured texts per second per process), and by one more while its oldest message has waited
  longer than that with every process up (the rate was optimistic, or texts are long);
* it also grows by one while texts keep waiting and every process is busy (utilisation at
  ``BUSY``): work arrives as fast as the pool serves it, however short the list;
* with work but a smaller need, it shrinks one process at a time, ``settle_s`` apart, and only
  while its processes have slack (utilisation under ``SLACK``);
* idle (nothing waiting or claimed) for ``shrink_after_s`` it keeps one warm process, idle for
  ``idle_to_zero_s`` none (its model's memory is freed); the first message brings one back;
* the budget: the processes of growing pools (a backlog) plus what the pools that keep up
  measurably use (their utilisation, rounded) never exceed ``cores``; every queue with work
  keeps at least one process, so none starves (with more such queues than cores, that is the
  one place the budget gives); extra cores go to the longest drain first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BUSY = 0.9  # utilisation at which texts waiting mean the pool is the bottleneck
SLACK = 0.6  # a pool with work shrinks only below this utilisation (no grow-shrink flapping)


@dataclass(frozen=True, slots=True)
class Policy:
    """The knobs (`embedq autoscale --help`)."""

    cores: int
    target_drain_s: float = 10.0
    settle_s: float = 5.0
    shrink_after_s: float = 15.0
    idle_to_zero_s: float = 60.0
    max_per_queue: int | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One queue at one tick."""

    queue: str
    texts_waiting: int
    oldest_age_s: float | None
    unacked: int
    processes: int  # running or starting, not stopping
    ready: int  # live consumers (model loaded, serving)
    rate_per_process: float  # texts/s one process serves (measured, or the prior)
    utilisation: float  # 0..1 of the running processes, over the last interval


@dataclass(slots=True)
class PoolMemory:
    """What the runner remembers of a queue between ticks."""

    min_size: int = 0
    last_work_at: float = 0.0
    last_change_at: float = -math.inf


@dataclass(frozen=True, slots=True)
class Decision:
    """A queue's new size and why."""

    queue: str
    current: int
    target: int
    reason: str


def has_work(seen: Observation) -> bool:
    """Texts waiting or messages claimed and not yet answered."""
    return seen.texts_waiting > 0 or seen.unacked > 0


def _need(seen: Observation, memory: PoolMemory, policy: Policy, now: float) -> tuple[int, str]:
    """The size a queue wants on its own, and the reason."""
    if not has_work(seen):
        idle = now - memory.last_work_at
        if idle >= policy.idle_to_zero_s:
            return memory.min_size, f"idle {idle:.0f}s"
        if idle >= policy.shrink_after_s and seen.processes > 1:
            return max(1, memory.min_size), f"idle {idle:.0f}s: one warm process"
        return seen.processes, "idle"
    rate = max(seen.rate_per_process, 1e-6)
    need = max(1, math.ceil(seen.texts_waiting / (rate * policy.target_drain_s)))
    reason = f"{seen.texts_waiting} texts waiting at {rate:.0f} texts/s per process"
    settled = now - memory.last_change_at >= policy.settle_s
    if need <= seen.processes and settled and seen.ready >= seen.processes:
        why = _short_handed(seen, policy)
        if why:
            return seen.processes + 1, why
    if need < seen.processes:
        if not settled or seen.utilisation >= SLACK:
            return seen.processes, reason + " (holding: settling or busy)"
        return seen.processes - 1, reason
    return need, reason


def _short_handed(seen: Observation, policy: Policy) -> str | None:
    """Why a pool whose backlog looks small should still grow by one, if it should.

    The oldest message has waited longer than the target (the rate was optimistic, or the texts
    are long), or texts keep waiting while every process is busy: work arrives at least as fast
    as the pool serves it, whatever the list holds (a producer's ``embed_many`` window keeps
    its backlog at home, so the queue shows only a window's worth).
    """
    if (seen.oldest_age_s or 0.0) > policy.target_drain_s:
        return f"oldest waited {seen.oldest_age_s:.0f}s"
    if seen.texts_waiting > 0 and seen.utilisation >= BUSY:
        return (f"{seen.texts_waiting} texts waiting while the {seen.processes} process(es) "
                f"are {seen.utilisation:.0%} busy")
    return None


def _allocate(wants: dict[str, int], seen: dict[str, Observation],
              policy: Policy) -> dict[str, int]:
    """Fit the growing pools' wishes into the cores the light pools leave free.

    Idle pools cost nothing (their processes wait on a socket); a light pool (one process
    drains it in time) costs what it measurably uses (a search pool at a few per cent of a core
    costs none); every growing pool keeps at least one process, and the rest go one by one to
    the longest drain.
    """
    growing = [q for q in wants if has_work(seen[q]) and wants[q] > 1]
    light_cost = sum(round(seen[q].utilisation * seen[q].processes) for q in wants
                     if has_work(seen[q]) and q not in growing)
    granted = {q: (1 if q in growing else wants[q]) for q in wants}
    free = policy.cores - light_cost - len(growing)

    def drain_s(queue: str) -> float:
        rate = max(seen[queue].rate_per_process, 1e-6)
        return seen[queue].texts_waiting / (rate * granted[queue])

    while free > 0:
        hungry = [q for q in growing if granted[q] < wants[q]]
        if not hungry:
            break
        granted[max(hungry, key=drain_s)] += 1
        free -= 1
    return granted


def decide(now: float, observed: list[Observation], memory: dict[str, PoolMemory],
           policy: Policy) -> list[Decision]:
    """A size for every observed queue (updates ``memory``: work seen, saturation)."""
    seen = {o.queue: o for o in observed}
    wants: dict[str, int] = {}
    asked: dict[str, int] = {}
    reasons: dict[str, str] = {}
    ceiling = policy.max_per_queue or policy.cores
    for o in observed:
        state = memory[o.queue]
        if has_work(o):
            state.last_work_at = now
        need, reasons[o.queue] = _need(o, state, policy, now)
        asked[o.queue] = max(need, state.min_size)
        wants[o.queue] = min(asked[o.queue], ceiling)
    granted = _allocate(wants, seen, policy)
    decisions = []
    for o in observed:
        target = granted[o.queue]
        reason = reasons[o.queue]
        if target < asked[o.queue]:
            reason += f"; wanted {asked[o.queue]}, the core budget ({policy.cores}) allows {target}"
        if target != o.processes:
            memory[o.queue].last_change_at = now
        decisions.append(Decision(o.queue, o.processes, target, reason))
    return decisions
