"""Where OpenVINO's forward pass spends its time, by layer type and kernel, per precision.

    HF_HUB_OFFLINE=1 python benchmarks/profile_openvino.py --model minilm [--texts short]
        [--threads 1]

Exports (or reuses) the model's OpenVINO IR (fp32, and NNCF int8) exactly as a worker does,
compiles it at fp32, bf16 and int8 with the CPU plugin's per-layer counters on
(``PERF_COUNT``), runs batches of 32 generated texts, and prints seconds per batch and each
layer type's share of the measured time, with the kernel the plugin picked (``brgemm_avx512``
is fp32 on AVX-512 FMA units, ``*_amx`` the AMX tiles): what a missed speed target is made of.
"""

from __future__ import annotations

import argparse
import collections
import time

import openvino as ov

from embedq.config.registry import Precision, load_registry
from embedq.config.settings import load_settings
from embedq.ops.bench_texts import generated
from embedq.worker.models.onnx_encoder import features, tokenizer
from embedq.worker.models.openvino_export import XML_FILE, exported_openvino
from embedq.worker.models.sources import resolve_source

BATCH = 32
ROUNDS = 5


def profile(xml: str, inputs: dict[str, object], threads: int,
            hint: str) -> tuple[float, dict[tuple[str, str], float]]:
    """(seconds per batch, share of layer time per (layer type, kernel))."""
    compiled = ov.Core().compile_model(xml, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": hint, "ENABLE_CPU_PINNING": False, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer(inputs)
    spent: collections.Counter[tuple[str, str]] = collections.Counter()
    started = time.perf_counter()
    for _ in range(ROUNDS):
        request.infer(inputs)
        for info in request.profiling_info:
            spent[(info.node_type, info.exec_type)] += info.real_time.total_seconds()
    per_batch = (time.perf_counter() - started) / ROUNDS
    total = sum(spent.values()) or 1.0
    return per_batch, {key: value / total for key, value in spent.items()}


def main() -> None:
    """Profile each precision and print the layer types above 1 % of the time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--texts", choices=["short", "long"], default="short")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    settings = load_settings()
    spec = load_registry(settings.config_dir).model(args.model)
    source = resolve_source(spec, settings.model_cache_dir)
    folders = {p: exported_openvino(spec, source, settings.model_cache_dir, p)
               for p in (Precision.FP32, Precision.INT8)}
    texts = generated(args.texts, BATCH)
    inputs = features(tokenizer(folders[Precision.FP32], spec.max_tokens), texts)
    print(f"{args.model}, OpenVINO {ov.get_version()}, {args.threads} thread(s), batch {BATCH} "
          f"{args.texts} texts ({inputs['input_ids'].shape[1]} tokens padded)")
    for label, folder, hint in (("fp32", folders[Precision.FP32], "f32"),
                                ("bf16", folders[Precision.FP32], "bf16"),
                                ("int8", folders[Precision.INT8], "f32")):
        per_batch, shares = profile(str(folder / XML_FILE), inputs, args.threads, hint)
        top = sorted(shares.items(), key=lambda item: -item[1])
        print(f"{label}: {per_batch * 1000:.1f} ms a batch; " + "; ".join(
            f"{kind} [{kernel}] {share:.0%}" for (kind, kernel), share in top if share >= 0.01))


if __name__ == "__main__":
    main()
