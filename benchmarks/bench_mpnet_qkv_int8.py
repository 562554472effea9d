"""mpnet int8 with its attention projections quantized, against the shipped recipe (issue 22).

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/bench_mpnet_qkv_int8.py [--cache DIR]

The shipped int8 recipe quantizes the fused graph, where MPNet's biased attention is one
``Attention`` op that QAttention cannot take (it has no attention-bias input), so its Q, K, V
weights stay fp32. This exports the graph with that attention left unfused, so the quantizer
sees the Q, K, V MatMuls, and measures each variant beside the optimized fp32 graph: mean and
minimum cosine on the probe's STS sentences (the 0.99 bar `auto` applies), mean cosine on the
export check texts (the 0.98 floor an int8 export must reach, a 384-token repetition among
them), texts/s at one thread relative to fp32 (best of three passes), the peak RSS of a fresh
process that opens the graph and embeds one batch, and the file size. Where OpenVINO is
installed it also measures its fp32 IR and the int8 IR of mpnet's recipe (``models.json``
``int8.openvino``: ``weights``, NNCF's int8 weight compression; ``static``, calibrated activations
with Q, K, V quantized: `openvino_export`), the candidates ``int8`` and ``auto`` measure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from embedq.config.registry import Precision, load_registry
from embedq.config.settings import load_settings
from embedq.worker.models.cpu import read_cpu_features
from embedq.worker.models.onnx_encoder import MODEL_FILE, features, session, tokenizer
from embedq.worker.models.onnx_export import (
    CHECK_TEXTS,
    Run,
    export_fp32,
    exported,
    quantize_int8,
)
from embedq.worker.models.openvino_export import (
    XML_FILE,
    exported_openvino,
    missing_library,
    runner,
    weights_recipe,
)
from embedq.worker.models.probe import sts_sample
from embedq.worker.models.sources import resolve_source

_RSS = """
import sys
from pathlib import Path
from embedq.worker.models.onnx_encoder import features, session, tokenizer
from embedq.worker.models.openvino_export import runner
inputs = features(tokenizer(Path(sys.argv[2]), 384), ["a sentence of a dozen words"] * 32)
if sys.argv[1].endswith(".xml"):
    runner(Path(sys.argv[1]), 1, "f32")[0](inputs)
else:
    session(Path(sys.argv[1]), 1).run(None, inputs)
print(int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) >> 10)
"""


def _cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.asarray((got * want).sum(1) / np.linalg.norm(got, axis=1)
                      / np.linalg.norm(want, axis=1))


def _run(path: Path) -> Run:
    """One thread of ONNX Runtime (a .onnx file) or OpenVINO at f32 (a .xml IR)."""
    if path.suffix == ".xml":
        return runner(path, 1, "f32")[0]
    opened = session(path, 1)
    return lambda inputs: opened.run(None, inputs)[0]


def _size(path: Path) -> int:
    """Bytes of the model file (an IR's weights are its .bin)."""
    return path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else (
        path.stat().st_size)


def main() -> None:
    """Build the variants, measure them, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="Model cache folder.")
    parser.add_argument("--no-dynamic", action="store_true",
                        help="Skip the unfused dynamic-quantization variants (slow to build).")
    args = parser.parse_args()
    settings = load_settings()
    cache = args.cache or settings.model_cache_dir
    spec = load_registry(settings.config_dir).model("mpnet")
    source = resolve_source(spec, cache)
    fp32 = exported(spec, source, cache, "fp32")
    shipped = exported(spec, source, cache, "int8")
    work = cache / "bench-mpnet-qkv-int8"
    unfused = work / "unfused"
    if not args.no_dynamic and not (unfused / "unfused.onnx").is_file():
        unfused.mkdir(parents=True, exist_ok=True)
        export_fp32(Path(source.location), unfused, 384, "mean", fuse_biased=False,
                    name="unfused.onnx")
    files = {"fp32 (optimized graph)": fp32 / MODEL_FILE,
             "shipped: fused, QKV fp32, 7-bit, keep ffn_out": shipped / MODEL_FILE}
    for label, keep, reduce_range in () if args.no_dynamic else (
            ("QKV int8, 7-bit, keep ffn_out", ("ffn_out",), True),
            ("QKV int8, 8-bit, keep ffn_out", ("ffn_out",), False),
            ("QKV int8, 7-bit, all int8", (), True)):
        folder = work / label.replace(" ", "").replace(",", "-")
        if not (folder / MODEL_FILE).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            quantize_int8(unfused / "unfused.onnx", folder, keep, reduce_range=reduce_range)
        files[label] = folder / MODEL_FILE
    if missing_library(Precision.INT8) is None:
        for precision in (Precision.FP32, Precision.INT8):
            folder = exported_openvino(spec, source, cache, precision)
            recipe = (" (NNCF int8 weights, activations quantized per group at run time)"
                      if weights_recipe(spec) else
                      " (NNCF static: calibrated, QKV int8, keep ffn_out)")
            files[f"OpenVINO {precision.value}" + (
                recipe if precision is Precision.INT8 else " IR")] = folder / XML_FILE
    sentences = sts_sample().sentences
    tok = tokenizer(fp32, 384)
    batches = [features(tok, sentences[i:i + 32]) for i in range(0, len(sentences), 32)]
    check = features(tok, CHECK_TEXTS)
    runs = {label: _run(path) for label, path in files.items()}
    vectors = {label: np.concatenate([run(b) for b in batches]) for label, run in runs.items()}
    checks = {label: run(check) for label, run in runs.items()}
    best = {label: float("inf") for label in runs}
    for _ in range(3):  # interleaved, so a neighbour's burst of load skews every variant alike
        for label, run in runs.items():
            started = time.perf_counter()
            for b in batches:
                run(b)
            best[label] = min(best[label], time.perf_counter() - started)
    base = "fp32 (optimized graph)"
    print(f"mpnet on {read_cpu_features().describe()}, one thread, "
          f"{len(sentences)} STS sentences")
    print("| variant | mean / min cosine (STS) | mean cosine (check texts) | speed vs fp32 "
          "| peak RSS MiB | file MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, path in files.items():
        cos = _cosines(vectors[label], vectors[base])
        rss = subprocess.run([sys.executable, "-c", _RSS, str(path), str(fp32)],
                             capture_output=True, text=True, check=True).stdout.strip()
        print(f"| {label} | {cos.mean():.4f} / {cos.min():.4f} | "
              f"{_cosines(checks[label], checks[base]).mean():.4f} | "
              f"{best[base] / best[label]:.2f}x | {rss} | "
              f"{_size(path) / 2**20:.0f} |")


if __name__ == "__main__":
    main()
