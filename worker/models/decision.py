"""Which candidate serves a model on this CPU: measured once, kept in a checked file, explained.

`choose` is a pure function of the probe's measurements: the fastest candidate that holds the
quality bar (mean cosine to PyTorch fp32 >= `MIN_MEAN_COSINE` and STS Spearman drop <=
`MAX_SPEARMAN_DROP`; an fp32 backend must moreover be *equal*, every cosine >= 0.9999). Nothing
is hard-coded per CPU: bf16 wins where it measures faster (AMX, AVX-512-BF16) and loses where
it does not (AVX2).

The measurements are cached per (model revision, CPU signature, library versions) in the model
cache folder as JSON with a sha256 of their content: a file that does not match its hash is
reported and measured again, never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import structlog

from embedq.config.errors import ConfigError
from embedq.config.precisions import INT8_MAX_SPEARMAN_DROP, INT8_MIN_MEAN_COSINE, Precision
from embedq.worker.models.candidates import REFERENCE, Candidate
from embedq.worker.models.cpu import CpuFeatures
from embedq.worker.models.probe import Measurement
from embedq.worker.models.sources import file_safe

log = structlog.get_logger(__name__)

MIN_MEAN_COSINE = INT8_MIN_MEAN_COSINE
MAX_SPEARMAN_DROP = INT8_MAX_SPEARMAN_DROP
#: An fp32 backend other than PyTorch must give the same vectors, not merely close ones.
FP32_MIN_COSINE = 0.9999
FORMAT = 1
_LIBRARIES = ("torch", "onnxruntime", "onnx", "transformers", "sentence-transformers", "openvino",
              "nncf")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose kernels a measurement depends on (no imports)."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def quality_miss(m: Measurement) -> str | None:
    """Why a measured candidate misses the quality bar, or None when it holds."""
    if m.error is not None:
        return m.error
    if m.candidate.precision is Precision.FP32 and m.candidate != REFERENCE and (
            m.min_cosine < FP32_MIN_COSINE):
        return f"min cosine {m.min_cosine:.5f} < {FP32_MIN_COSINE} (fp32 must be equal)"
    if m.mean_cosine < MIN_MEAN_COSINE:
        return f"mean cosine {m.mean_cosine:.4f} < {MIN_MEAN_COSINE}"
    if m.spearman_drop > MAX_SPEARMAN_DROP:
        return f"Spearman drop {m.spearman_drop:+.4f} > {MAX_SPEARMAN_DROP}"
    return None


def choose(measured: dict[Candidate, Measurement],
           allowed: list[Candidate]) -> tuple[Candidate, str]:
    """(candidate, reason): the fastest allowed candidate that holds the bar.

    PyTorch fp32 is the reference and always qualifies; it is also what is left when it is the
    only candidate measured.
    """
    holding = [measured[c] for c in allowed
               if c in measured and (c == REFERENCE or quality_miss(measured[c]) is None)]
    if not holding:
        return REFERENCE, f"no allowed candidate measured; {REFERENCE} is the fallback"
    best = max(holding, key=lambda m: m.texts_per_s)
    others = "; ".join(
        f"{m.candidate} {m.speedup:.2f}x" + (f" ({why})" if (why := quality_miss(m)) else "")
        for c in allowed if c in measured and (m := measured[c]) is not best)
    return best.candidate, (
        f"{best.candidate} is the fastest holding mean cosine >= {MIN_MEAN_COSINE} and Spearman "
        f"drop <= {MAX_SPEARMAN_DROP}: {best.speedup:.2f}x {REFERENCE}, mean cosine "
        f"{best.mean_cosine:.4f}, Spearman drop {best.spearman_drop:+.4f}"
        + (f"; others: {others}" if others else ""))


def _measurement(fields: dict[str, Any]) -> Measurement:
    """A stored row back as a `Measurement` (null numbers were NaN)."""
    numbers = {k: math.nan if v is None else float(v) for k, v in fields.items()
               if k not in ("candidate", "error")}
    return Measurement(candidate=Candidate.parse(str(fields["candidate"])),
                       error=fields.get("error"), **numbers)


class DecisionFile:
    """The measurements of one model on one CPU with one set of libraries."""

    def __init__(self, cache_dir: Path, model: str, revision: str, cpu: CpuFeatures) -> None:
        self.versions = library_versions()
        libs = hashlib.sha256(json.dumps(self.versions, sort_keys=True).encode()).hexdigest()
        self.key = {"format": FORMAT, "model": model, "revision": revision,
                    "cpu": cpu.model_name, "cpu_signature": cpu.signature(),
                    "flags": sorted(cpu.flags), "libraries": self.versions}
        self.path = (cache_dir / "decisions" / f"{model}-{file_safe(revision)}-"
                     f"{cpu.signature()}-{libs[:12]}.json")

    @staticmethod
    def _digest(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def load(self) -> dict[Candidate, Measurement]:
        """The cached measurements; {} when absent, or when corrupt (logged, to be re-measured)."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            body = document["body"]
            if document["sha256"] != self._digest(body) or body["key"] != self.key:
                raise ValueError("content does not match its sha256 or its key")
            rows = [_measurement(fields) for fields in body["measured"].values()]
            return {row.candidate: row for row in rows}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            log.warning("decision_file_corrupt", file=str(self.path), error=str(exc),
                        action="measuring again")
            return {}

    def save(self, measured: dict[Candidate, Measurement], extra: dict[str, Any]) -> None:
        """Write atomically (temporary file renamed into place); NaN stored as null."""
        rows = {str(name): {k: (None if isinstance(v, float) and math.isnan(v) else v)
                            for k, v in m.fields().items()} for name, m in measured.items()}
        body = {"key": self.key, "measured": rows, **extra}
        text = json.dumps({"body": body, "sha256": self._digest(body)}, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=self.path.name, dir=self.path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as sink:
            sink.write(text)
        os.replace(temporary, self.path)
