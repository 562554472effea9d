"""The one way a model step falls back to PyTorch fp32: a log line and a counter.

An export that fails (disk full, an unsupported op, a crash in a kernel) or a probe that cannot
finish must not leave a worker dead: it serves PyTorch fp32, says so once in the log, and
``embedq_model_fallbacks_total{model, stage}`` counts it (registered in the worker's metrics).
"""

from __future__ import annotations

import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

MODEL_FALLBACKS = Counter(
    "embedq_model_fallbacks_total",
    "Model steps that fell back to PyTorch fp32 (stage: export or probe).",
    ["model", "stage"], registry=None,
)


def fall_back(model: str, stage: str, wanted: str, error: BaseException | str) -> None:
    """Record that ``wanted`` could not be served and PyTorch fp32 is served instead."""
    MODEL_FALLBACKS.labels(model=model, stage=stage).inc()
    log.warning("model_fallback", model=model, stage=stage, wanted=wanted,
                error=str(error), action="serving torch-fp32")
