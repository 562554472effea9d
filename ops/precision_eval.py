"""``embedq eval precision``: every precision a model runs at here, measured beside fp32.

Speed alone decides nothing (an int8 graph can run faster and still lose half its cosine), so
each precision is reported with its quality against fp32 on the same texts (mean and minimum
cosine) and on a task (STS-B dev Spearman), its memory (the RSS of a fresh process that loads
the model the way a worker does and embeds one batch, and what loading added to a bare embedq
process: an int8 worker never imports torch) and its weight bytes. Throughput is
raw batches of 32 in input order (padding as in production), timed in one process so the ratios
are comparable; absolute figures on shared machines are noisy, ratios less so.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from embedq.config.errors import ConfigError, ModelUnavailableError
from embedq.config.registry import Precision, Registry
from embedq.config.settings import Settings
from embedq.ops.evaluation.datasets import read_pairs
from embedq.ops.evaluation.samples import STS_SAMPLE
from embedq.ops.memory_probe import BATCH, measure_rss
from embedq.tasks.vectors import l2_normalize
from embedq.worker.models.encoder import Encoder
from embedq.worker.models.loading import check_model, load_encoder


@dataclass(frozen=True, slots=True)
class PrecisionFigures:
    """One row of the report; ``precision`` names the metric set (fp32 and int8 side by side)."""

    model: str
    precision: str
    rss_mib: float
    model_rss_mib: float
    weight_bytes: int
    texts_per_s: float
    speedup: float
    mean_cosine: float
    min_cosine: float
    spearman: float
    spearman_drop: float


def stsb_pairs(path: Path, limit: int | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """STS sentence pairs (``sentence1,sentence2,score``) and their gold scores."""
    pairs = read_pairs(path)
    return (pairs.first[:limit], pairs.second[:limit],
            np.array(pairs.scores[:limit], dtype=np.float64))


def bundled_sts() -> Path:
    """The STS-B sample shipped with embedq (the default when no file is given)."""
    return Path(str(resources.files(STS_SAMPLE[0]).joinpath(STS_SAMPLE[1])))


def encode(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """Raw batches of `BATCH` in input order, float32."""
    return np.concatenate([encoder.encode_batch(texts[i : i + BATCH])
                           for i in range(0, len(texts), BATCH)])


def runnable(registry: Registry, model: str, settings: Settings) -> tuple[list[Precision],
                                                                          dict[str, str]]:
    """The precisions the model runs at here (fp32 first), and why the others do not."""
    ok: list[Precision] = []
    skipped: dict[str, str] = {}
    for precision in registry.model(model).precisions:
        try:
            check_model(registry, model, precision.value, settings)
        except (ConfigError, ModelUnavailableError) as exc:
            skipped[precision.value] = str(exc)
        else:
            ok.append(precision)
    if Precision.FP32 not in ok:
        raise ModelUnavailableError(f"model {model!r} does not run at fp32 here: "
                                    f"{skipped.get('fp32', 'not listed')}")
    return sorted(ok, key=lambda p: p is not Precision.FP32), skipped


def evaluate(registry: Registry, model: str, settings: Settings, *, stsb: Path, texts: int,
             pairs: int | None, threads: int) -> tuple[list[PrecisionFigures], dict[str, str]]:
    """Measure each precision that runs here against fp32 (see the module docstring)."""
    import torch

    torch.set_num_threads(threads)
    first, second, gold = stsb_pairs(stsb, pairs)
    sentences = list(dict.fromkeys(first + second))
    timed = sentences[:texts]
    precisions, skipped = runnable(registry, model, settings)
    rows: list[PrecisionFigures] = []
    reference: np.ndarray | None = None
    base_speed = base_spearman = 0.0
    for precision in precisions:
        encoder = load_encoder(registry, model, precision, settings, threads)
        encode(encoder, timed[:BATCH])  # warm-up
        started = time.perf_counter()
        encode(encoder, timed)
        speed = len(timed) / (time.perf_counter() - started)
        vectors = l2_normalize(encode(encoder, sentences).astype(np.float32))
        reference = vectors if reference is None else reference
        cosine = (vectors * reference).sum(1)
        where = {text: i for i, text in enumerate(sentences)}
        sims = (vectors[[where[t] for t in first]] * vectors[[where[t] for t in second]]).sum(1)
        from scipy.stats import spearmanr

        spearman = float(spearmanr(sims, gold).statistic)
        if precision is Precision.FP32:
            base_speed, base_spearman = speed, spearman
        rss, model_rss = measure_rss(model, precision.value, threads)
        rows.append(PrecisionFigures(
            model=model, precision=encoder.precision, rss_mib=round(rss, 1),
            model_rss_mib=round(model_rss, 1), weight_bytes=encoder.weight_bytes,
            texts_per_s=round(speed, 1), speedup=round(speed / base_speed, 3),
            mean_cosine=round(float(cosine.mean()), 4), min_cosine=round(float(cosine.min()), 4),
            spearman=round(spearman, 4), spearman_drop=round(base_spearman - spearman, 4),
        ))
        del encoder
        gc.collect()
    return rows, skipped


def table(rows: list[PrecisionFigures]) -> str:
    """The rows as an aligned text table."""
    header = list(PrecisionFigures.__dataclass_fields__)
    lines = [header] + [[str(v) for v in asdict(row).values()] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True))
                     for line in lines)
