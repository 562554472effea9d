"""The worker's Celery app: the contract's app plus the embed task and its process life cycle.

Models load in each pool process right after fork (``worker_process_init``), never in the parent,
with torch threads set so that processes x threads match the cores. The models to load follow
from the queues the worker consumes (``embed.<model>.<precision>``), so ``embedq worker`` and a
plain ``celery worker -Q ...`` behave the same.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
import uuid
from typing import Any

import structlog
from celery import Celery, signals

from embedq.config.errors import EmbedqError, PayloadError
from embedq.config.logs import configure_logging
from embedq.config.registry import Precision, Registry
from embedq.config.settings import Settings
from embedq.tasks.app import create_app
from embedq.tasks.names import EMBED_TASK, parse_queue
from embedq.tasks.schema import EmbedRequest, EmbedResult
from embedq.worker.batching import TextBatches
from embedq.worker.cache_tiered import process_cache
from embedq.worker.heartbeat import Heartbeat
from embedq.worker.loaded_models import LoadedModels
from embedq.worker.metrics import BatchMetrics
from embedq.worker.models.loading import check_model
from embedq.worker.service import EmbedService

log = structlog.get_logger(__name__)


class WorkerRuntime:
    """Per-process state: what to preload, how many threads, and the service itself."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.models = LoadedModels(registry, settings)
        self.service = EmbedService(registry, settings, self.models, process_cache(settings))
        self.preload: list[tuple[str, Precision]] = []
        self.queues: list[str] = []
        self.concurrency = 1
        self.main_pid = os.getpid()
        self.failed = False
        self.heartbeat: Heartbeat | None = None

    def plan(self, queues: list[str], concurrency: int) -> None:
        """Remember which models this worker's queues need, and check them before any fork."""
        self.concurrency = max(1, concurrency)
        self.main_pid = os.getpid()
        self.queues = queues
        for queue in queues:
            parsed = parse_queue(queue)
            if parsed is None:
                log.warning("queue_not_embedq", queue=queue)
                continue
            model, precision = parsed
            self.preload.append((model, check_model(self.registry, model, precision,
                                                             self.settings)))

    def start_process(self) -> None:
        """Set torch threads for this pool process and load its models."""
        threads = self.settings.torch_threads or max(1, (os.cpu_count() or 1) // self.concurrency)
        self.models.threads = threads
        torch = sys.modules.get("torch")  # imported by check_model for torch models only:
        if torch is not None:  # an int8 worker runs on ONNX Runtime (threads set per session)
            torch.set_num_threads(threads)
        for model, precision in self.preload:
            try:
                self.models.get(model, precision)
            except EmbedqError as exc:
                # Nothing half-loaded serves traffic: the whole worker stops (warm shutdown), its
                # queues never look live, and producers move on along the route's fallback chain.
                self.failed = True
                log.error("model_unavailable", model=model, precision=precision.value,
                          error=str(exc), action="stopping the worker")
                os.kill(self.main_pid, signal.SIGTERM)
                return

    def start_heartbeat(self) -> None:
        """Tell producers this worker's queues have a consumer (not if a model failed)."""
        if self.failed or not self.queues:
            return
        self.heartbeat = Heartbeat(self.settings, self.queues)
        self.heartbeat.start()

    def stop_heartbeat(self) -> None:
        """Withdraw this worker from its queues' live consumers."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    def run_batch(self, app: Celery, requests: list[Any]) -> None:
        """Embed a flush of messages and store one result or error per message.

        celery-batches runs the flush as one anonymous task, so each message's outcome is also
        sent as its own task event: Flower then shows every request as succeeded or failed.
        """
        log.info("batch_started", requests=len(requests), pid=os.getpid())
        hostname = requests[0].hostname if requests else None
        with app.events.default_dispatcher(hostname=hostname) as events:
            self._run_batch(app, events, requests)

    def _run_batch(self, app: Celery, events: Any, requests: list[Any]) -> None:
        parsed: list[tuple[Any, EmbedRequest]] = []
        for message in requests:
            try:
                parsed.append((message, EmbedRequest.from_wire(message.args[0])))
            except (PayloadError, IndexError, TypeError) as exc:
                error = exc if isinstance(exc, PayloadError) else PayloadError(
                    f"message {message.id} has no embed request argument")
                self._fail(app, events, message, error)
        if not parsed:
            return
        started = time.perf_counter()
        try:
            outcomes = self.service.handle([request for _, request in parsed])
        except Exception as exc:  # a bug or OOM: fail this flush's messages, keep the worker
            log.exception("batch_failed", requests=len(parsed))
            for message, _ in parsed:
                self._fail(app, events, message, EmbedqError(f"worker error: {exc!r}"))
            return
        elapsed_ms = round((time.perf_counter() - started) * 1e3, 3)
        batch_texts = sum(len(r.texts) for _, r in parsed)
        flush_id = uuid.uuid4().hex[:12]
        for (message, request), outcome in zip(parsed, outcomes, strict=True):
            with structlog.contextvars.bound_contextvars(
                task_id=message.id, route=request.route, model=request.model,
                precision=request.precision, flush_id=flush_id,
            ):
                if isinstance(outcome, EmbedResult):
                    self._succeed(app, events, message, outcome, elapsed_ms, batch_texts)
                else:
                    self._fail(app, events, message, outcome)

    @staticmethod
    def _succeed(
        app: Celery, events: Any, message: Any, result: EmbedResult, elapsed_ms: float,
        batch_texts: int,
    ) -> None:
        queue = (message.delivery_info or {}).get("routing_key") or ""
        timings = {**result.timings_ms, "total": elapsed_ms}
        result = dataclasses.replace(result, worker=message.hostname or "", queue=queue,
                                     timings_ms=timings)
        app.backend.mark_as_done(message.id, result.to_wire(), request=message)
        events.send("task-succeeded", uuid=message.id, runtime=elapsed_ms / 1e3,
                    result=f"{len(result.cached)} vectors of {result.dim}")
        log.info("embedded", texts=len(result.cached), batch_texts=batch_texts,
                 errors=len(result.errors), latency_ms=elapsed_ms)

    @staticmethod
    def _fail(app: Celery, events: Any, message: Any, error: EmbedqError) -> None:
        app.backend.mark_as_failure(message.id, error, request=message, call_errbacks=False)
        events.send("task-failed", uuid=message.id, exception=repr(error))
        log.warning("embed_failed", task_id=message.id, error=str(error))


def create_worker_app(settings: Settings, registry: Registry) -> Celery:
    """The Celery app a worker runs: the embed task, batching and model life cycle."""
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    app.conf.update(
        worker_prefetch_multiplier=max(4, settings.batch_flush_texts),
        worker_proc_alive_timeout=120.0,
    )
    runtime = WorkerRuntime(registry, settings)
    metrics = BatchMetrics()

    @app.task(
        name=EMBED_TASK,
        base=TextBatches,
        flush_texts=settings.batch_flush_texts,
        flush_interval=settings.batch_interval_s,
        acks_late=True,
        metrics=metrics,
    )
    def embed(requests: list[Any]) -> None:
        runtime.run_batch(app, requests)

    @signals.celeryd_after_setup.connect(weak=False)
    def _plan(sender: str, instance: Any, **_: Any) -> None:
        queues = list(instance.app.amqp.queues.consume_from or {})
        runtime.plan(queues, int(instance.concurrency or 1))
        if "prefork" not in getattr(instance.pool_cls, "__module__", str(instance.pool_cls)):
            runtime.start_process()  # solo/threads pools never fork: load here

    @signals.worker_process_init.connect(weak=False)
    def _start_process(**_: Any) -> None:
        runtime.start_process()

    @signals.worker_ready.connect(weak=False)
    def _ready(**_: Any) -> None:
        runtime.start_heartbeat()
        if settings.metrics_port is not None:
            metrics.serve(settings.metrics_port, settings.metrics_address)
            log.info("metrics_exporter", port=settings.metrics_port,
                     address=settings.metrics_address)

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(**_: Any) -> None:
        runtime.stop_heartbeat()

    return app
