"""An exported ONNX model (`onnx_export`) as an `Encoder`, on ONNX Runtime alone.

At run time only onnxruntime, tokenizers and numpy are used: an int8 or ONNX-fp32 worker never
imports torch (about 220 MiB per process). Both variants return mean-pooled float32 vectors,
not normalised, like the torch encoder before its route's normalisation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embedq.config.errors import ModelUnavailableError
from embedq.config.registry import ModelSpec
from embedq.worker.models.sources import ResolvedSource

MODEL_FILE = "model.onnx"
META_FILE = "meta.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "config.json", "sentence_bert_config.json")


def tokenizer(model_dir: Path, max_tokens: int | None) -> Any:
    """The fast tokenizer from ``tokenizer.json``; padded and truncated when max_tokens is set."""
    from tokenizers import Tokenizer

    loaded = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    loaded.no_truncation()
    loaded.no_padding()
    if max_tokens is not None:
        loaded.enable_truncation(max_tokens)
        pad = loaded.token_to_id("<pad>")  # mpnet
        pad = loaded.token_to_id("[PAD]") if pad is None else pad  # BERT / MiniLM
        if pad is None:
            raise ModelUnavailableError(f"{model_dir}: tokenizer has neither <pad> nor [PAD]")
        loaded.enable_padding(pad_id=pad)
    return loaded


def features(loaded: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """input_ids and attention_mask, int64, padded to the longest text."""
    encoded = loaded.encode_batch(texts)
    return {
        "input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
    }


def _prompted(texts: list[str], prompt: str) -> list[str]:
    """``prompt + text`` for each text, as sentence-transformers builds its input."""
    return [prompt + text for text in texts] if prompt else texts


def session(model_file: Path, threads: int) -> Any:
    """An ORT CPU session with ``threads`` intra-op threads (see `cpu.threads_per_process`)
    and no spinning, so an idle worker does not burn the cores its siblings need."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """An `onnx_export.exported` folder (fp32 or int8) as an `Encoder`."""

    backend = "onnx"
    #: The file of the folder whose size is reported as the weights' bytes.
    weights_file = MODEL_FILE

    def __init__(self, spec: ModelSpec, source: ResolvedSource, folder: Path,
                 threads: int) -> None:
        meta = json.loads((folder / META_FILE).read_text())
        self.max_tokens = int(meta["max_tokens"])
        self.precision = str(meta["variant"])
        # fp32 vectors equal PyTorch's (cosine >= 0.9999, checked at export), so they share the
        # torch fp32 cache entries; int8 vectors are another space and name their recipe.
        self.revision = (source.revision if self.precision == "fp32"
                         else f"{source.revision}+{meta['recipe']}")
        self._run, self.dim = self._open(folder, threads)
        self.weight_bytes = (folder / self.weights_file).stat().st_size
        self._encode = tokenizer(folder, self.max_tokens)
        self._count = tokenizer(folder, None)
        if self.dim != spec.dim:
            raise ModelUnavailableError(
                f"model {spec.name!r} gives {self.dim}-d vectors but models.json says "
                f"{spec.dim}; fix models.json")

    def _open(self, folder: Path, threads: int) -> tuple[Callable[[dict[str, np.ndarray]],
                                                                  np.ndarray], int]:
        """(one forward pass over tokenized inputs, the output dimension)."""
        opened = session(folder / MODEL_FILE, threads)
        return (lambda inputs: opened.run(None, inputs)[0],
                int(opened.get_outputs()[0].shape[-1]))

    def count_tokens(self, texts: list[str], prompt: str = "") -> list[int]:
        """Token counts before truncation, special tokens included."""
        return [len(e.ids) for e in self._count.encode_batch(_prompted(texts, prompt))]

    def encode_batch(self, texts: list[str], prompt: str = "") -> np.ndarray:
        """Tokenise (truncating to max_tokens), one ORT run, float32 pooled vectors.

        The graph pools every token, the prompt's included: a model whose pooling leaves the
        prompt out is not exported (`onnx_export`), so this is sentence-transformers' result.
        """
        out = self._run(features(self._encode, _prompted(texts, prompt)))
        return np.ascontiguousarray(out, dtype=np.float32)
