"""Every candidate backend x precision of a model on the CPU at hand, and what ``auto`` picks.

    HF_HUB_OFFLINE=1 python benchmarks/bench_auto.py --model minilm [--texts 256] [--threads 1]
        [--candidates torch-fp32,onnx-int8]   # a subset, to split a long run

Speed: raw PyTorch fp32 (``SentenceTransformer.encode(batch_size=32)``, the baseline) and each
candidate (length-sorted batches of 32, as the worker runs them) take turns for ``--rounds``
rounds on the same texts, short (8-15 tokens, search-query-like) and ~40-token STS-B dev
sentences; the ratio is the median of the per-round ratios, so a neighbour's burst of load on a
shared machine hits both sides. Quality: mean/min cosine to PyTorch fp32 and STS-B dev Spearman
on ``--pairs`` pairs. RSS: a fresh process that loads the candidate as a worker does. A half
precision on a CPU without its units is timed on one round of short texts only (it is 3-7x
slower there). The last lines name the candidate ``auto`` picked and why.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from shared_data import data_dir

from embedq.config.registry import Precision, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.ops.memory_probe import measure_rss
from embedq.ops.precision_eval import stsb_pairs
from embedq.worker.models.cpu import read_cpu_features
from embedq.worker.models.encoder import Encoder
from embedq.worker.models.probe import BATCH
from embedq.worker.models.selection import allowed_candidates, build, plan
from embedq.worker.models.sources import resolve_source


@dataclass(frozen=True, slots=True)
class Row:
    candidate: str
    short_per_s: float
    short_ratio: float
    long_per_s: float
    long_ratio: float
    mean_cosine: float
    min_cosine: float
    spearman: float
    spearman_drop: float
    rss_mib: float


def sorted_encode(encoder: Encoder) -> Callable[[list[str]], np.ndarray]:
    """Length-sorted batches of 32, vectors back in input order."""
    def encode(texts: list[str]) -> np.ndarray:
        lengths = encoder.count_tokens(texts)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            chosen = order[start:start + BATCH]
            out[chosen] = encoder.encode_batch([texts[i] for i in chosen])
        return out
    return encode


def paired(base: Callable[[list[str]], object], other: Callable[[list[str]], object],
           texts: list[str], rounds: int) -> tuple[float, float]:
    """(texts/s of ``other``, median per-round ratio to ``base``)."""
    other(texts[:BATCH])
    speeds, ratios = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        base(texts)
        base_speed = len(texts) / (time.perf_counter() - started)
        started = time.perf_counter()
        other(texts)
        speeds.append(len(texts) / (time.perf_counter() - started))
        ratios.append(speeds[-1] / base_speed)
    return float(np.median(speeds)), float(np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--candidates", default=None,
                        help="comma-separated candidate names to measure (default: every one "
                             "auto allows here), to split a long run")
    args = parser.parse_args()
    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    settings = Settings(**{**load_settings().model_dump(), "auto_candidates": None,
                           "fp32_backend": "auto"})
    spec = load_registry(settings.config_dir).model(args.model)
    source = resolve_source(spec, settings.model_cache_dir)
    first, second, gold = stsb_pairs(data_dir(args.data) / "stsb_dev.csv", args.pairs)
    sentences = list(dict.fromkeys(first + second))
    raw = SentenceTransformer(source.location, device="cpu")
    counts = raw.tokenizer(sentences)["input_ids"]
    short = [s for s, ids in zip(sentences, counts, strict=True) if 8 <= len(ids) <= 15]
    longer = [s for s, ids in zip(sentences, counts, strict=True) if 32 <= len(ids) <= 48]
    short, longer = short[:args.texts], (longer * 4)[:args.texts // 2]

    def baseline(texts: list[str]) -> np.ndarray:
        return raw.encode(texts, batch_size=BATCH, convert_to_numpy=True)

    reference = baseline(sentences)
    where = {text: i for i, text in enumerate(sentences)}
    cpu = read_cpu_features()
    rows: list[Row] = []
    wanted = set(args.candidates.split(",")) if args.candidates else None
    for candidate in allowed_candidates(spec, Precision.AUTO, "auto", cpu):
        if wanted is not None and str(candidate) not in wanted:
            continue
        name, precision = str(candidate), candidate.precision
        encode = sorted_encode(build(spec, source, settings, candidate, args.threads))
        slow_half = candidate.on_pytorch and (
            (precision is Precision.BF16 and not cpu.bf16_units)
            or (precision is Precision.FP16 and not cpu.fp16_units))
        if slow_half:
            short_speed, short_ratio = paired(baseline, encode, short[:2 * BATCH], 1)
            rows.append(Row(name, round(short_speed, 1), round(short_ratio, 3), 0, 0,
                            *([float("nan")] * 4), float("nan")))
            continue
        short_speed, short_ratio = paired(baseline, encode, short, args.rounds)
        long_speed, long_ratio = paired(baseline, encode, longer, args.rounds)
        vectors = encode(sentences)
        cosine = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1)
                                                 * np.linalg.norm(reference, axis=1))

        def rho(v: np.ndarray) -> float:
            a, b = v[[where[t] for t in first]], v[[where[t] for t in second]]
            sims = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            return float(spearmanr(sims, gold).statistic)

        os.environ["EMBEDQ_AUTO_CANDIDATES"] = json.dumps([name])  # auto limited to it
        rss, _ = measure_rss(args.model, Precision.AUTO.value, args.threads)
        rows.append(Row(name, round(short_speed, 1), round(short_ratio, 3), round(long_speed, 1),
                        round(long_ratio, 3), round(float(cosine.mean()), 5),
                        round(float(cosine.min()), 5), round(rho(vectors), 4),
                        round(rho(reference) - rho(vectors), 4), round(rss, 1)))
    chosen = plan(spec, source, Precision.AUTO, settings)
    header = list(Row.__dataclass_fields__)
    lines = [header] + [[str(v) for v in asdict(r).values()] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print(f"{spec.name} on {cpu.describe()}, torch threads {args.threads}, "
          f"{time.strftime('%Y-%m-%d')}; ratios to raw SentenceTransformer.encode fp32")
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    print(f"auto picked {chosen.candidate}: {chosen.reason}")
    if args.json is not None:
        args.json.write_text(json.dumps({"cpu": cpu.model_name, "rows": [asdict(r) for r in rows],
                                         "auto": str(chosen.candidate)}, indent=1))


if __name__ == "__main__":
    main()
