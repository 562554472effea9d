"""The autoscaler's loop: observe every queue, decide (`policy.decide`), start or stop workers.

Each tick reads each broker (a route may name its own) in two round trips (`queue_stats` and
`texts_waiting`), and every `rates.READ_EVERY_S` each of its own workers' ``/metrics``; between
ticks, queues that had nothing waiting are looked at every `QUICK_LOOK_S` (work there starts the
next tick at once); each
change is logged as one ``autoscale_decision`` JSON line (queue, from, to, reason) and the
sizes are gauges (``embedq_autoscale_pool_size``, ``embedq_autoscale_texts_per_s_per_process``)
on ``--metrics-port``. It runs the workers of one host; on Kubernetes KEDA makes the same decision
per queue (`embedq.ops.k8s`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import redis
import structlog
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.ops.autoscale.policy import Decision, Observation, Policy, PoolMemory, decide
from embedq.ops.autoscale.pools import Pool
from embedq.ops.autoscale.rates import RateMeter
from embedq.ops.k8s.sizing import footprint
from embedq.tasks.brokers import broker_clients, read_all
from embedq.tasks.names import bulk_queue, parse_queue
from embedq.tasks.queue_stats import queue_stats
from embedq.tasks.queue_texts import texts_waiting

log = structlog.get_logger(__name__)
TICK_S = 0.5
# Between ticks, a queue seen without texts at the last tick is looked at this often (one LLEN
# of each of its lists, pipelined per broker): work arriving there (a burst on a warm or idle
# pool) brings the next tick forward, so the pools it squeezes shrink sooner.
QUICK_LOOK_S = 0.1


@dataclass
class Backoff:
    """After a worker exits on its own (a model that cannot load, a crash), wait before the
    next start, doubling up to a minute: a broken queue must not become a fork loop."""

    delay_s: float = 0.0
    until: float = 0.0

    def failed(self, now: float) -> None:
        """A worker exited unasked."""
        self.delay_s = min(60.0, max(2.0, self.delay_s * 2))
        self.until = now + self.delay_s

    def allows(self, now: float) -> bool:
        """May a worker start now?"""
        return now >= self.until


def _prior(queue: str) -> float:
    model, precision = parse_queue(queue) or (queue, "fp32")
    return footprint(model, precision).texts_per_s


class Autoscaler:
    """Keeps each queue's pool sized to its load within a core budget."""

    def __init__(self, settings: Settings, queues: Sequence[str], policy: Policy,
                 env: dict[str, str], *, keep: Sequence[str] = (), initial: int = 0) -> None:
        self.queues = list(queues)
        self.policy = policy
        self.brokers = broker_clients(load_registry(settings.config_dir), settings, queues,
                                      socket_timeout=5.0)
        self.pools = {q: Pool(q, env) for q in self.queues}
        self.memory = {q: PoolMemory(min_size=1 if q in keep else 0) for q in self.queues}
        self.meters = {q: RateMeter(_prior(q)) for q in self.queues}
        self.backoff = {q: Backoff() for q in self.queues}
        self.quiet: set[str] = set()  # queues without texts waiting at the last tick
        self.registry = CollectorRegistry()
        self.size_gauge = Gauge("embedq_autoscale_pool_size", "Worker processes of the queue "
                                "(one core each) the autoscaler keeps.", ["queue"],
                                registry=self.registry)
        self.rate_gauge = Gauge("embedq_autoscale_texts_per_s_per_process", "Service rate one "
                                "process measured while a backlog drained (or the prior).",
                                ["queue"], registry=self.registry)
        now = time.monotonic()
        for queue in self.queues:
            self.memory[queue].last_work_at = now  # a fresh start counts as recent work
            self.pools[queue].grow(max(initial, self.memory[queue].min_size))

    def serve_metrics(self, port: int, address: str = "127.0.0.1") -> None:
        """The gauges on ``http://address:port/metrics``."""
        start_http_server(port, addr=address, registry=self.registry)

    def observe(self, now: float) -> list[Observation]:
        """What every queue looks like now (and the rate meters updated)."""
        read = read_all(self.brokers, lambda client, names: list(zip(
            queue_stats(client, names), texts_waiting(client, names), strict=True)))
        found = []
        for stat, texts in read:
            pool, meter = self.pools[stat.queue], self.meters[stat.queue]
            backoff = self.backoff[stat.queue]
            if pool.reap():
                backoff.failed(now)
                log.warning("autoscale_backoff", queue=stat.queue, wait_s=backoff.delay_s)
            elif stat.consumers:
                backoff.delay_s = 0.0  # served again: the next failure waits two seconds
            meter.saw(texts > 0)
            if meter.due(now):  # a reading scrapes every worker: not every tick (`rates`)
                meter.update(now, pool.served(), pool.size, texts > 0)
            if texts > 0:
                self.quiet.discard(stat.queue)
            else:
                self.quiet.add(stat.queue)
            found.append(Observation(stat.queue, texts, stat.oldest_age_s, stat.unacked,
                                     pool.size, stat.consumers, meter.rate_per_process,
                                     meter.utilisation))
        return found

    def apply(self, decisions: list[Decision], now: float) -> None:
        """Start or stop workers; log each change; set the gauges."""
        for decision in decisions:
            pool = self.pools[decision.queue]
            if decision.target > pool.size and not self.backoff[decision.queue].allows(now):
                decision = replace(decision, target=pool.size,
                                   reason="a worker of this queue exited on its own: waiting "
                                          f"{self.backoff[decision.queue].delay_s:.0f}s "
                                          "before starting another (its log says why)")
            if decision.target > pool.size:
                pool.grow(decision.target - pool.size)
            elif decision.target < pool.size:
                pool.shrink(pool.size - decision.target)
            if decision.target != decision.current:
                log.info("autoscale_decision", queue=decision.queue, size_from=decision.current,
                         size_to=decision.target, reason=decision.reason,
                         texts_per_s_per_process=round(self.meters[decision.queue]
                                                       .rate_per_process, 1))
            self.size_gauge.labels(decision.queue).set(decision.target)
            self.rate_gauge.labels(decision.queue).set(self.meters[decision.queue]
                                                       .rate_per_process)

    def tick(self, now: float | None = None) -> list[Decision]:
        """One observe-decide-act round; a broker outage skips the round (workers stay)."""
        now = time.monotonic() if now is None else now
        try:
            observed = self.observe(now)
        except (redis.RedisError, OSError) as exc:
            log.warning("autoscale_broker_unavailable", error=str(exc), action="sizes unchanged")
            return []
        decisions = decide(now, observed, self.memory, self.policy)
        self.apply(decisions, now)
        return decisions

    def work_arrived(self) -> bool:
        """Has a queue that had no texts waiting at the last tick got some since?"""
        def read(client: redis.Redis, names: list[str]) -> list[bool]:
            watched = [name for name in names if name in self.quiet]
            if not watched:
                return []
            with client.pipeline(transaction=False) as pipe:
                for name in watched:
                    pipe.llen(name)
                    pipe.llen(bulk_queue(name))
                return [bool(length) for length in pipe.execute()]
        try:
            arrived: list[bool] = read_all(self.brokers, read)
        except (redis.RedisError, OSError):
            return False  # the tick says so
        return any(arrived)

    def run(self, stopping: Callable[[], bool]) -> None:
        """Tick until ``stopping()``, then warm-stop every worker."""
        log.info("autoscale_started", queues=self.queues, cores=self.policy.cores,
                 target_drain_s=self.policy.target_drain_s,
                 idle_to_zero_s=self.policy.idle_to_zero_s)
        try:
            while not stopping():
                self.tick()
                # A polling period, not a wait for an event; cut short by work on a quiet queue.
                due = time.monotonic() + TICK_S
                while (left := due - time.monotonic()) > 0 and not stopping():
                    time.sleep(min(QUICK_LOOK_S, left))
                    if self.work_arrived():
                        break
        finally:
            self.stop()

    def stop(self) -> None:
        """Warm-stop every pool's workers at once."""
        for pool in self.pools.values():
            pool.shrink(pool.size)
        for pool in self.pools.values():
            pool.stop_all(grace_s=60)
