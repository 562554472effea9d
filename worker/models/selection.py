"""What serves a (model, precision) on this machine: asked for, measured, explained, cached.

Run in the worker's parent before it forks (`loading.check_model`); pool processes inherit the
in-process memo, so they open finished files and never probe. On a CPU:

* ``auto``: every candidate the model allows is measured once per (model revision, CPU
  signature, library versions) and the fastest that holds the quality bar serves (`decision`);
* ``fp32``: the optimized ONNX graph where it measures faster than PyTorch and equal to it,
  else PyTorch (``EMBEDQ_FP32_BACKEND=torch|onnx`` forces one);
* ``int8``: the ONNX int8 graph, or OpenVINO's statically quantized one where it measures
  faster at the same bar (``EMBEDQ_AUTO_CANDIDATES`` limits every measured choice; one left
  with none of its candidates listed serves its first: PyTorch fp32, or ONNX int8);
* ``bf16`` / ``fp16``: PyTorch at that precision, refused on a CPU without the units, with the
  measured slow-down in the message (``auto`` also measures ``autocast-bf16``: fp32 weights
  under ``torch.autocast``, and ``openvino-bf16`` on a CPU with bf16 units).

OpenVINO candidates (fp32, bf16, int8) are optional: without the library they are left out
with the reason logged (`skipped_candidates`).

Anything that fails on the way (an export, a probe) falls back to PyTorch fp32 (`fallback`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog

from embedq.config.errors import ConfigError
from embedq.config.registry import ModelSpec, Precision
from embedq.config.settings import Settings
from embedq.worker.models.candidates import (
    AUTOCAST_BF16,
    ONNX_FP32,
    ONNX_INT8,
    OPENVINO,
    OPENVINO_BF16,
    OPENVINO_FP32,
    OPENVINO_INT8,
    REFERENCE,
    Candidate,
    Runtime,
    on_torch,
)
from embedq.worker.models.cpu import CpuFeatures, read_cpu_features, torch_capability
from embedq.worker.models.decision import DecisionFile, choose
from embedq.worker.models.encoder import Encoder
from embedq.worker.models.fallback import fall_back
from embedq.worker.models.precision import HALF, Placement, choose_cuda
from embedq.worker.models.probe import Measurement, Probe, sts_sample
from embedq.worker.models.sources import ResolvedSource

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    """The candidate that serves, where it runs, and (ONNX) its exported folder."""

    candidate: Candidate
    device: str
    reason: str
    folder: Path | None = None

    @property
    def precision(self) -> Precision:
        """The weight precision actually served."""
        return self.candidate.precision


PROBE_THREADS = 1
_PLANS: dict[tuple[str, ...], Plan] = {}


def reset_plans() -> None:
    """Forget this process's plans (tests that change files or settings between loads)."""
    _PLANS.clear()


def allowed_candidates(spec: ModelSpec, precision: Precision, fp32_backend: str,
                       cpu: CpuFeatures) -> list[Candidate]:
    """The candidates a CPU worker may serve for this request, PyTorch fp32 first (PyTorch
    alone for a model whose pooling the ONNX export does not reproduce); the ones that cannot
    run here (`skipped_candidates`) left out."""
    found = _candidates(spec, precision, fp32_backend)
    if spec.pooling == "other":
        found = [c for c in found if not c.exported] or [REFERENCE]
    skipped = skipped_candidates(cpu)
    return [c for c in found if c not in skipped] or [REFERENCE]


def skipped_candidates(cpu: CpuFeatures) -> dict[Candidate, str]:
    """Candidates that cannot run on this machine, and why: an OpenVINO one without its library,
    and ``openvino-bf16`` on a CPU without bf16 units (OpenVINO would quietly run it in fp32, so
    it would be fp32 under the bf16 name, not a slow bf16 the probe could cut)."""
    from embedq.worker.models.openvino_export import missing_library

    skipped = {c: f"the {library!r} package is not installed" for c in OPENVINO
               if (library := missing_library(c.precision)) is not None}
    if not cpu.bf16_units:
        skipped.setdefault(OPENVINO_BF16, "no bf16 units on this CPU")
    return skipped


def _candidates(spec: ModelSpec, precision: Precision, fp32_backend: str) -> list[Candidate]:
    if precision is Precision.FP32:
        return {"torch": [REFERENCE], "onnx": [ONNX_FP32]}.get(
            fp32_backend, [REFERENCE, ONNX_FP32, OPENVINO_FP32])
    if precision is Precision.INT8:
        return [ONNX_INT8, OPENVINO_INT8]
    if precision in HALF:
        return [on_torch(precision)]
    found = _candidates(spec, Precision.FP32, fp32_backend)
    if Precision.INT8 in spec.precisions:
        found += [ONNX_INT8, OPENVINO_INT8]
    found += [on_torch(p) for p in HALF if p in spec.precisions]
    return found + ([AUTOCAST_BF16, OPENVINO_BF16] if Precision.BF16 in spec.precisions
                    else [])


def build(spec: ModelSpec, source: ResolvedSource, settings: Settings, chosen: Candidate,
          threads: int, folder: Path | None = None) -> Encoder:
    """Load one candidate (exported candidates are exported first when no folder is given)."""
    if chosen.runtime is Runtime.AUTOCAST:
        from embedq.worker.models.torch_encoder import TorchEncoder

        return TorchEncoder(spec, source, Placement("cpu", Precision.FP32),
                            autocast=chosen.precision)
    if chosen.exported:
        if folder is None:
            try:
                folder = export(spec, source, settings, chosen)
            except Exception as exc:
                fall_back(spec.name, "export", str(chosen), exc)
                raise
        if chosen.runtime is Runtime.OPENVINO:
            from embedq.worker.models.openvino_encoder import OpenVinoEncoder

            return OpenVinoEncoder(spec, source, folder, threads, chosen.precision)
        from embedq.worker.models.onnx_encoder import OnnxEncoder

        return OnnxEncoder(spec, source, folder, threads)
    from embedq.worker.models.torch_encoder import TorchEncoder

    return TorchEncoder(spec, source, Placement("cpu", chosen.precision))


def export(spec: ModelSpec, source: ResolvedSource, settings: Settings,
           chosen: Candidate) -> Path:
    """The exported folder an ONNX or OpenVINO candidate runs from, built if missing."""
    if chosen.runtime is Runtime.OPENVINO:
        from embedq.worker.models.openvino_export import exported_openvino

        return exported_openvino(spec, source, settings.model_cache_dir, chosen.precision)
    from embedq.worker.models.onnx_export import exported

    return exported(spec, source, settings.model_cache_dir, chosen.precision.value)


def measure(spec: ModelSpec, source: ResolvedSource, settings: Settings, cpu: CpuFeatures,
            wanted: list[Candidate]) -> dict[Candidate, Measurement]:
    """Cached measurements of ``wanted`` (plus the reference), probing what is missing."""
    file = DecisionFile(settings.model_cache_dir, spec.name, source.revision, cpu)
    measured = file.load()
    missing = [c for c in wanted if c not in measured]
    if not missing:
        return measured
    import torch  # the reference is PyTorch fp32

    # One thread: what each pool process of a one-process-per-core worker runs (measured
    # best), and the figure least disturbed by neighbours on a shared machine (a 2-thread
    # torch pass slowed 3x under load, its OpenMP barriers waiting on a descheduled thread).
    threads = PROBE_THREADS
    torch.set_num_threads(threads)
    probe = Probe(sts_sample())
    for name in [REFERENCE, *(c for c in missing if c != REFERENCE)]:
        measured[name] = probe.measure(name, partial(build, spec, source, settings, name,
                                                     threads))
        log.info("probe_measured", model=spec.name, **measured[name].fields())
    file.save(measured, {"torch_capability": torch_capability(), "probe_threads": threads})
    return measured


def _refuse_half(spec: ModelSpec, precision: Precision, cpu: CpuFeatures,
                 measured: Callable[[], dict[Candidate, Measurement]]) -> None:
    """Refuse bf16/fp16 on a CPU without the units, quoting the measured slow-down."""
    units = cpu.bf16_units if precision is Precision.BF16 else cpu.fp16_units
    if units:
        return
    row = measured().get(on_torch(precision))
    figure = (f"measured {row.speedup:.2f}x PyTorch fp32 here" if row is not None
              else "not measurable here")
    raise ConfigError(
        f"model {spec.name!r}: {precision.value} on this CPU ({cpu.describe()}) has no "
        f"{precision.value} units and {figure}; fix: start the worker with --precision auto "
        "(or fp32/int8)")


def _decide(spec: ModelSpec, source: ResolvedSource, precision: Precision,
            settings: Settings) -> Plan:
    from embedq.worker.models.precision import cuda_support

    cuda, bf16_ok = cuda_support()
    if cuda:
        chosen = choose_cuda(spec, bf16_ok) if precision is Precision.AUTO else (precision, "")
        if chosen[0] is Precision.INT8:
            raise ConfigError(f"model {spec.name!r}: int8 runs on ONNX Runtime's CPU kernels; "
                              "on a GPU use --precision fp16, bf16 or auto")
        return Plan(on_torch(chosen[0]), "cuda", chosen[1] or "asked for")
    cpu = read_cpu_features()
    allowed = allowed_candidates(spec, precision, settings.fp32_backend, cpu)
    for name, why in skipped_candidates(cpu).items():
        if name in _candidates(spec, precision, settings.fp32_backend):
            log.info("candidate_skipped", model=spec.name, candidate=str(name), reason=why)
    if settings.auto_candidates is not None:  # a measured choice tries the listed ones only
        listed = {Candidate.parse(name) for name in settings.auto_candidates}
        allowed = [c for c in allowed if c in listed] or allowed[:1]
    if precision in HALF:
        _refuse_half(spec, precision, cpu, lambda: measure(
            spec, source, settings, cpu, [on_torch(precision)]))
    if len(allowed) == 1:
        return Plan(allowed[0], "cpu", "asked for")
    try:
        measured = measure(spec, source, settings, cpu, allowed)
    except Exception as exc:  # a probe must not kill the worker
        fall_back(spec.name, "probe", precision.value, exc)
        return Plan(REFERENCE, "cpu", f"probe failed: {exc!r}")
    name, reason = choose(measured, allowed)
    log.info("precision_decided", model=spec.name, asked=precision.value, chosen=str(name),
             reason=reason, cpu=cpu.describe(), cpu_signature=cpu.signature(),
             torch_capability=torch_capability())
    return Plan(name, "cpu", reason)


def plan(spec: ModelSpec, source: ResolvedSource, precision: Precision,
         settings: Settings) -> Plan:
    """What serves ``precision`` of ``spec`` here; ONNX artefacts exported (or fallen back)."""
    key = (spec.name, precision.value, settings.fp32_backend,
           str(settings.model_cache_dir), str(settings.auto_candidates))
    if key in _PLANS:
        return _PLANS[key]
    chosen = _decide(spec, source, precision, settings)
    if chosen.candidate.exported:
        try:
            folder = export(spec, source, settings, chosen.candidate)
            chosen = Plan(chosen.candidate, "cpu", chosen.reason, folder)
        except Exception as exc:  # disk full, unsupported op, a kernel crash: serve fp32
            fall_back(spec.name, "export", str(chosen.candidate), exc)
            chosen = Plan(REFERENCE, "cpu", f"{chosen.candidate} export failed: {exc!r}")
    log.info("placement", model=spec.name, asked=precision.value, serving=str(chosen.candidate),
             device=chosen.device)
    _PLANS[key] = chosen
    return chosen
