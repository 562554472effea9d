"""SciFact retrieval through the queue against the same model in process (issue 12 target).

    embedq up &    # or any workers; then, with EMBEDQ_REDIS_URL set:
    python benchmarks/bench_eval_scifact.py [--use-case search] [--data DIR]

Runs `embedq eval retrieval`'s evaluator twice on BEIR SciFact (the train queries and qrels in
``DIR/scifact``, ``../shared/data`` by default; SciFact is CC BY-NC, so it is never bundled):
once through the route's workers, once with sentence-transformers in this process on the
route's model, and prints both and their difference. The target is |difference| <= 0.005 nDCG@10
for all-MiniLM-L6-v2 fp32 (MTEB publishes 0.645 on the test queries).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared_data import data_dir

from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.ops.evaluation.datasets import read_retrieval
from embedq.ops.evaluation.evaluators import retrieval_evaluator
from embedq.ops.evaluation.metrics import as_float
from embedq.ops.evaluation.runner import evaluate_route
from embedq.producer import EmbeddingClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--use-case", default="search")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    folder = data_dir(args.data) / "scifact"
    evaluator = retrieval_evaluator(read_retrieval(folder / "corpus.jsonl.gz",
                                                  folder / "queries_train.jsonl",
                                                  folder / "qrels_train.tsv"))
    settings = load_settings()
    with EmbeddingClient(settings) as client:
        queued = evaluate_route(client, evaluator, args.use_case, data="scifact train")
    registry = load_registry(settings.config_dir)
    route = registry.route(args.use_case)

    from sentence_transformers import SentenceTransformer

    from embedq.worker.models.sources import resolve_source

    source = resolve_source(registry.model(route.model), settings.model_cache_dir)
    model = SentenceTransformer(source.location, device="cpu")
    dim = registry.output_dim(route)
    in_process = evaluator(lambda texts: as_float(
        model.encode(texts, batch_size=32, normalize_embeddings=True), dim))
    print(json.dumps({"route": args.use_case, "queued": queued.metrics,
                      "queued_texts_per_s": round(queued.texts_per_s, 1),
                      "in_process": in_process,
                      "difference": {k: queued.metrics[k] - in_process[k] for k in in_process}},
                     indent=2))


if __name__ == "__main__":
    main()
