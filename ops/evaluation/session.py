"""One ``embedq eval`` run: check every route first, then evaluate each and save the results."""

from __future__ import annotations

from dataclasses import replace

from embedq.config.settings import Settings
from embedq.ops.dashboard.scrape import queue_memory
from embedq.ops.evaluation.evaluators import Evaluator
from embedq.ops.evaluation.report import result_document
from embedq.ops.evaluation.results import save
from embedq.ops.evaluation.runner import EvalResult, evaluate_route, require_live_worker
from embedq.producer import EmbeddingClient
from embedq.tasks.connections import redis_client


def run_routes(settings: Settings, evaluator: Evaluator, routes: list[str | None], *,
               data: str) -> list[EvalResult]:
    """Evaluate on each route in turn (all are checked for a live worker before the first)."""
    broker = redis_client(settings.broker, master_name=settings.sentinel_master)
    results: list[EvalResult] = []
    with EmbeddingClient(settings) as client:
        names = [route or client.registry.default_route for route in routes]
        for name in names:
            require_live_worker(client, name)
        for name in names:
            result = evaluate_route(client, evaluator, name, data=data)
            memory = queue_memory(broker, client.route_status(name).queue.queue)
            result = replace(result, worker_memory_bytes=memory)
            save(broker, settings.eval_results_file, result_document(result))
            results.append(result)
    broker.close()
    return results
