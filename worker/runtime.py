"""What one worker process runs: its models, its service, its consumers and its heartbeat.

The worker's parent checks the models of its queues before it forks (a missing package or an
impossible precision stops the worker at start-up); each pool process then loads them, with
compute threads set so that processes x threads match the cores, and starts one consumer thread
per queue. Celery's own consumer in the parent serves remote control, heartbeats and Flower,
and consumes none of the embed queues (see `worker.app`).
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from celery import Celery

from embedq.config.errors import EmbedqError
from embedq.config.registry import Precision, Registry
from embedq.config.settings import Settings
from embedq.tasks.brokers import settings_for_queues
from embedq.tasks.connections import database, redis_client
from embedq.tasks.names import inflight_key, parse_queue, route_queue
from embedq.tasks.schema import EmbedRequest
from embedq.worker.batching import BatchPolicy
from embedq.worker.cache_tiered import process_cache
from embedq.worker.celery_canvas import CeleryApps
from embedq.worker.celery_control import celery_gate
from embedq.worker.celery_requests import message_reader
from embedq.worker.claims import QueueClaims
from embedq.worker.consumer import Consumer, Guard
from embedq.worker.heartbeat import Heartbeat
from embedq.worker.loaded_models import LoadedModels
from embedq.worker.metrics import BatchFacts, BatchMetrics
from embedq.worker.models.cpu import threads_per_process
from embedq.worker.models.loading import check_model
from embedq.worker.processes import consumer_id
from embedq.worker.replies import ReplyTarget
from embedq.worker.service import EmbedService

log = structlog.get_logger(__name__)
_STOP_GRACE_S = 60.0  # longest a stopping process waits for the batch in hand
_SOCKET_TIMEOUT_S = 30.0  # far above a blocking wait (POLL_S): only a dead connection hits it
POLL_S = 1.0
# An idle consumer blocks on its interactive list this long before it claims again: the claim
# is also what finds bulk work, which a blocking wait cannot see (see `worker.consumer`).
_IDLE_POLL_S = 0.25
_HALT_POLL_S = 0.05  # how often a pool process looks at its parent's halt flag


@dataclass
class _Running:
    """The threads of this process while it serves."""

    stopping: threading.Event = field(default_factory=threading.Event)  # consumers: halt
    stopped: threading.Event = field(default_factory=threading.Event)  # `stop` has begun
    threads: list[threading.Thread] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    heartbeat: Heartbeat | None = None


def queue_guard(registry: Registry, queue: str) -> Guard:
    """Which (model, precision) a queue may serve: the one its name gives, or, for a route's own
    queue name, the models of the routes that send there."""
    parsed = parse_queue(queue)
    allowed = {parsed} if parsed is not None else {
        (route.served_by(model).model, route.precision.value)
        for route in registry.routes.values() for model in route.chain
        if route_queue(route.served_by(model)) == queue}

    def guard(request: EmbedRequest) -> str | None:
        if (request.model, request.precision) in allowed:
            return None
        served = ", ".join(f"{m} at {p}" for m, p in sorted(allowed)) or "nothing configured"
        return (f"asks for {request.model} at {request.precision}, but queue {queue} serves "
                f"{served}; send it to that model's queue")

    return guard


def _observer(service: EmbedService) -> Callable[[BatchFacts], None]:
    """Count each batch, and what the process's cache tiers did meanwhile."""
    metrics = BatchMetrics()

    def observe(facts: BatchFacts) -> None:
        metrics.observe(facts)
        cache = service.cache()
        if cache is not None:
            metrics.observe_cache(facts.queue, cache.stats())

    return observe


class WorkerRuntime:
    """Plans in the parent, serves in each pool process (or in the parent for a solo pool)."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.preload: list[tuple[str, Precision]] = []
        self.queues: list[str] = []
        self.hostname = ""
        self.processes = 1
        self.main_pid = os.getpid()
        self.celery: Celery | None = None  # the worker's app: Celery producers' results
        # Set by the parent when the whole worker is ready; shared with the pool processes.
        self.ready = multiprocessing.get_context("fork").Event()
        # Set by the parent the moment its shutdown begins (SIGTERM): the pool processes' consumers
        # start no further forward pass from then on, instead of from when Celery's shutdown
        # reaches the pool (`halt`). A lock-free shared flag, not a multiprocessing Event: it is
        # set from a signal handler, and an Event's lock is not re-entrant (a second SIGTERM
        # arriving inside the first handler's `set` hung the worker for good: the autoscaler's
        # stop sends two) nor safe against a pool process killed while holding it.
        self.halting = multiprocessing.get_context("fork").RawValue(ctypes.c_bool, False)
        self._running: _Running | None = None

    def plan(self, queues: list[str], hostname: str, processes: int, app: Celery) -> None:
        """Check every queue's model before any fork (the int8 export and split zip too)."""
        self.queues, self.hostname, self.celery = queues, hostname, app
        # Claims, replies, heartbeats and the cache use the broker of these queues (a route may
        # name its own); Celery's remote control stays on the app's broker.
        self.settings = settings_for_queues(self.registry, self.settings, queues)
        self.processes = max(1, processes)
        self.main_pid = os.getpid()
        for queue in queues:
            parsed = parse_queue(queue)
            if parsed is None:
                log.info("queue_models_from_messages", queue=queue,
                         note="not named embed.<model>.<precision>: models load on first use")
                continue
            model, precision = parsed
            self.preload.append((model, check_model(self.registry, model, precision,
                                                    self.settings)))

    def threads(self) -> int:
        """Compute threads for each process: the cores shared out, at least one."""
        return threads_per_process(self.processes, self.settings.torch_threads)

    def start(self) -> None:
        """In a pool process: load the models, then start the consumers and the heartbeat."""
        models = LoadedModels(self.registry, self.settings)
        models.threads = self.threads()
        torch = sys.modules.get("torch")  # imported by check_model for torch models only:
        if torch is not None:  # an int8 worker runs on ONNX Runtime (threads set per session)
            torch.set_num_threads(models.threads)
        for model, precision in self.preload:
            try:
                models.get(model, precision)
            except EmbedqError as exc:
                # Nothing half-loaded serves traffic: the whole worker stops (warm shutdown), its
                # queues never look live, and producers move on along the route's fallback chain.
                log.error("model_unavailable", model=model, precision=precision.value,
                          error=str(exc), action="stopping the worker")
                os.kill(self.main_pid, signal.SIGTERM)
                return
        # The modules and models loaded by now live as long as the process: the collector's
        # full passes skip them, so a pass never stalls a batch for the whole heap's walk.
        gc.freeze()
        service = EmbedService(self.registry, self.settings, models, process_cache(self.settings))
        self._running = self._start_consumers(service)

    def _start_consumers(self, service: EmbedService) -> _Running:
        settings = self.settings
        client = redis_client(settings.broker, master_name=settings.sentinel_master,
                              socket_timeout=_SOCKET_TIMEOUT_S, socket_keepalive=True)
        running = _Running()
        compute = threading.Lock()
        observe = _observer(service) if settings.metrics_port is not None else None
        policy = BatchPolicy.from_settings(settings)
        apps = CeleryApps(self.celery, settings) if self.celery is not None else None
        for queue in self.queues:
            claims = QueueClaims(client, queue, consumer_id())
            target = ReplyTarget(queue=queue, inflight=inflight_key(queue, claims.consumer),
                                 hostname=self.hostname, db=database(settings.broker),
                                 reply_ttl_s=settings.result_expires_s,
                                 events=settings.task_events, celery=apps)
            running.consumers.append(Consumer(
                claims, target, service.handle, queue_guard(self.registry, queue), policy,
                compute, poll_s=_IDLE_POLL_S,
                sweep_every_s=min(POLL_S, settings.liveness_interval_s),
                observe=observe,
                read=message_reader(self.registry, queue, settings.max_text_chars),
                gate=celery_gate(client)))
        running.heartbeat = Heartbeat(
            settings, [(c.queue, c.claims.consumer) for c in running.consumers])
        threading.Thread(target=self._serve, args=(running,), name="embedq-gate",
                         daemon=True).start()
        return running

    def _serve(self, running: _Running) -> None:
        """Start serving once the whole worker is ready, then watch for an orphaned process.

        Celery treats a pool process that dies before the worker is ready as a failed start and
        stops the worker, so nothing is claimed before then. A pool process whose parent was
        killed finishes its batch and exits instead of serving on, unsupervised.
        """
        while not self.ready.wait(POLL_S):
            if self._orphaned() or running.stopping.is_set() or self.halting.value:
                return
        assert running.heartbeat is not None
        running.heartbeat.start()
        for consumer in running.consumers:
            thread = threading.Thread(target=consumer.run, args=(running.stopping,),
                                      name=f"embedq-consumer-{consumer.queue}", daemon=True)
            thread.start()
            running.threads.append(thread)
        while not running.stopped.wait(_HALT_POLL_S):  # until `stop` (Celery's shutdown)
            if self.halting.value and not running.stopping.is_set():
                running.stopping.set()  # the worker's shutdown began: halt the consumers
            if self._orphaned():
                log.warning("worker_parent_gone", action="finishing the pass in hand, exiting")
                self.stop()
                os._exit(0)

    def halt(self, *_: object, **__: object) -> None:
        """In the parent, as its shutdown begins (a signal handler: only sets a flag): every
        process's consumers finish the forward pass in progress, answer what it completed and
        hand the rest of their claimed batch back to the queue, without waiting for Celery's
        shutdown to reach the pool (it takes a while)."""
        self.halting.value = True  # a plain store: safe in a signal handler, and re-entrant

    def _orphaned(self) -> bool:
        return os.getpid() != self.main_pid and os.getppid() != self.main_pid

    def stop(self) -> None:
        """Finish the batches in hand, then withdraw from the queues (idempotent)."""
        running, self._running = self._running, None
        if running is None:
            return
        running.stopped.set()
        running.stopping.set()
        for thread in running.threads:
            thread.join(timeout=_STOP_GRACE_S)
        finished = not any(thread.is_alive() for thread in running.threads) and all(
            consumer.clean for consumer in running.consumers)
        if running.heartbeat is not None:
            running.heartbeat.stop(withdraw=finished)
        log.info("consumers_stopped", queues=self.queues, finished=finished)
