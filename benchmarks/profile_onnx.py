"""Where an exported model's forward pass spends its time, by ONNX op type (fp32 and int8).

    HF_HUB_OFFLINE=1 python benchmarks/profile_onnx.py --model mpnet [--texts short] [--threads 1]
        [--out FOLDER]

Exports (or reuses) the model's optimized fp32 graph and its int8 variant exactly as a worker
does, runs a batch of generated texts through each with ONNX Runtime's profiler on, and prints
the share of kernel time per op type: what a missed speed target is made of. The profiler's
JSON traces (hundreds of KB each) go to a temporary folder removed at the end, or are kept in
``--out`` for chrome://tracing; never in the working folder.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.ops.bench_texts import generated
from embedq.worker.models.onnx_export import MODEL_FILE, exported
from embedq.worker.models.sources import resolve_source


def profile(folder: Path, texts: list[str], threads: int,
            out: Path) -> tuple[float, dict[str, float]]:
    """Seconds per batch and each op type's share of kernel time; the trace goes to ``out``."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(out / f"onnxruntime_profile_{folder.name}")
    session = ort.InferenceSession(str(folder / MODEL_FILE), options,
                                   providers=["CPUExecutionProvider"])
    feed = {i.name: ids if "input_ids" in i.name else mask for i in session.get_inputs()}
    session.run(None, feed)
    started = time.perf_counter()
    for _ in range(3):
        session.run(None, feed)
    seconds = (time.perf_counter() - started) / 3
    kernel_time: collections.Counter[str] = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel_time[event["args"]["op_name"]] += event["dur"]
    total = sum(kernel_time.values()) or 1
    return seconds, {op: spent / total for op, spent in kernel_time.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mpnet")
    parser.add_argument("--texts", choices=["short", "long"], default="short")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the profiler traces in this folder (default: discarded)")
    args = parser.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report(args, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="embedq-onnx-profile-") as scratch:
        report(args, Path(scratch))


def report(args: argparse.Namespace, out: Path) -> None:
    """Profile the fp32 and int8 graphs of ``args.model`` and print each one's op shares."""
    settings = load_settings()
    spec = load_registry(settings.config_dir).model(args.model)
    source = resolve_source(spec, settings.model_cache_dir)
    texts = generated(args.texts, args.batch, seed=5)
    for variant in ("fp32", "int8"):
        folder = exported(spec, source, settings.model_cache_dir, variant)
        seconds, shares = profile(folder, texts, args.threads, out)
        print(f"{args.model} {variant}: {seconds * 1e3:.0f} ms per batch of {args.batch} "
              f"{args.texts} texts, {args.threads} thread(s)")
        for op, share in list(shares.items())[:8]:
            print(f"    {op:28} {share:6.1%}")


if __name__ == "__main__":
    main()
