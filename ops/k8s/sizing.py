"""What one worker process of a model costs and serves: memory, cold start, texts per second.

Worker pods and the autoscaler size themselves from these figures. Each row says where it
comes from; every figure was measured on one 2-vCPU AMD EPYC shared with other jobs, so treat
them as a starting point and measure your own (`embedq bench`, `embedq eval precision`; the
dashboard shows worker memory). A model without a row gets `UNMEASURED`, a deliberately roomy
guess, and the rendered file says so.

* ``parent_mib`` / ``process_mib``: RSS of ``embedq worker -c 1 --threads 1`` after a warm start
  (the Celery parent, then the one pool process that holds the model);
* ``first_start_mib``: parent + pool process RSS right after a first start on an empty model
  cache (ONNX export, quantization, `auto`'s measurements run in the parent): the peak a pod's
  memory limit must allow, since a pod starts with an empty ``/models`` unless you give it a
  volume that keeps them;
* ``warm_start_s`` / ``first_start_s``: from process start to the queue's liveness entry (model
  loaded, consumer serving), warm and on an empty model cache;
* ``texts_per_s``: one pool process, one thread, short texts (the autoscaler's prior; it
  measures the real rate while a backlog drains).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Footprint:
    """One worker process of a model at a precision."""

    parent_mib: float
    process_mib: float
    first_start_mib: float
    warm_start_s: float
    first_start_s: float
    texts_per_s: float
    source: str

    @property
    def warm_mib(self) -> float:
        """Parent plus one pool process, warm: a one-process pod's steady memory."""
        return self.parent_mib + self.process_mib


_MEASURED = ("measured 2026-12-03 by starting `embedq worker -c 1` with an empty, then a warm "
             "model cache (2-vCPU AMD EPYC, shared machine)")
FOOTPRINTS: dict[tuple[str, str], Footprint] = {
    ("minilm", "fp32"): Footprint(
        89, 247, 1343, 1.3, 15.1, 105,
        f"{_MEASURED}; texts/s: README 'Pool design', 2 processes x 1 thread = 209 texts/s"),
    ("minilm", "int8"): Footprint(
        89, 164, 1340, 1.2, 13.9, 150,
        f"{_MEASURED}; texts/s: the fp32 rate x 2.07/1.41 (README: int8 and fp32 workers "
        "against raw PyTorch through `embedq bench --scenario bulk`)"),
    ("mpnet", "auto"): Footprint(
        90, 752, 6705, 5.5, 395.0, 15,
        f"{_MEASURED}; auto chose onnx-fp32 there (the first start measures every candidate in "
        "the parent: 6.5 minutes and its memory peak); texts/s: an estimate, MiniLM's / 7 "
        "(twice the layers, twice the width), not measured"),
    ("hashing", "fp32"): Footprint(
        89, 120, 300, 1.0, 1.0, 5000,
        "the deterministic test model, not measured: no weights, the memory is Python and "
        "Celery"),
}
UNMEASURED = Footprint(
    100, 2048, 4096, 30.0, 600.0, 20,
    "no measurement for this model: a roomy guess; measure it and edit the rendered resources")


def footprint(model: str, precision: str) -> Footprint:
    """The measured figures for a model at a precision (``auto`` may match a measured row)."""
    return FOOTPRINTS.get((model, precision), UNMEASURED)


def memory_request_mib(fp: Footprint) -> int:
    """A one-process pod's request: warm memory plus a quarter for batches and caches."""
    return _round_up(fp.warm_mib * 1.25)


def memory_limit_mib(fp: Footprint) -> int:
    """The pod's limit: the first start's peak (export and checks in the parent) with room."""
    return _round_up(max(fp.first_start_mib, fp.warm_mib * 1.5) * 1.2)


def _round_up(mib: float, step: int = 64) -> int:
    return int(-(-mib // step) * step)
