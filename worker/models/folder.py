"""What a sentence-transformers folder says about itself, read from its JSON files (no torch).

`embedq models add` registers a user's model from these facts: the native dimension (the
Pooling module's, or the last Dense module's), the token limit (``max_seq_length``), the pooling
mode, whether the prompt is pooled, whether vectors are normalised, and the named prompts of
``config_sentence_transformers.json``. A folder that lacks something is refused with one error
that names every missing or unreadable file, so a user fixes it in one go.

``onnx_pooling`` says what embedq's ONNX export can reproduce: mean or CLS pooling of the
transformer's last layer, followed by nothing but an optional Normalize. Anything else (max or
last-token pooling, a Dense projection, a pooling that leaves the prompt out) is served by
PyTorch alone, where sentence-transformers' own modules run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedq.config.errors import ModelUnavailableError

MODULES = "modules.json"
ST_CONFIG = "config_sentence_transformers.json"
BERT_CONFIG = "sentence_bert_config.json"
_POOLING = "sentence_transformers.models.Pooling"
_TAIL_OK = ("Normalize",)
#: transformers writes a huge model_max_length (1e30) when a tokenizer has no limit.
_UNSET_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class FolderFacts:
    """A model folder's facts, as models.json records them."""

    dim: int
    max_tokens: int
    pooling: str  # the Pooling module's mode: mean, cls, max, lasttoken, ...
    onnx_pooling: str  # "mean" or "cls" where the ONNX export reproduces it, else "other"
    normalized: bool
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    tokenizer_json: bool = True


def _read(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path.name} is missing")
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} is unreadable ({exc})")
    return None


def _pooling_mode(config: dict[str, Any]) -> str:
    """The pooling mode in either spelling (``pooling_mode`` or ``pooling_mode_*_tokens``)."""
    if isinstance(config.get("pooling_mode"), str):
        return str(config["pooling_mode"])
    flags = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
             "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt",
             "pooling_mode_weightedmean_tokens": "weightedmean",
             "pooling_mode_lasttoken": "lasttoken"}
    on = [mode for key, mode in flags.items() if config.get(key)]
    return "+".join(on) or "none"


def _dimension(pooling: dict[str, Any], mode: str, dense: list[dict[str, Any]]) -> int | None:
    if dense:
        out = dense[-1].get("out_features")
        return int(out) if isinstance(out, int) else None
    width = pooling.get("embedding_dimension", pooling.get("word_embedding_dimension"))
    if not isinstance(width, int):
        return None
    return width * (mode.count("+") + 1)  # several modes are concatenated


@dataclass
class _Modules:
    """What modules.json says: the Pooling config and the module kinds after it."""

    pooling: dict[str, Any] | None = None
    tail: list[str] = field(default_factory=list)
    dense: list[dict[str, Any]] = field(default_factory=list)


def _modules(folder: Path, problems: list[str]) -> _Modules:
    modules = _read(folder / MODULES, problems)
    found = _Modules()
    if modules is None:
        return found
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        problems.append(f"{MODULES} is not a list of modules")
        return found
    seen_pooling = False
    for module in modules:
        kind, path = str(module.get("type", "")), folder / str(module.get("path", ""))
        if kind.endswith("Pooling"):
            seen_pooling = True
            found.pooling = _read(path / "config.json", problems)
        elif seen_pooling:
            found.tail.append(kind.rsplit(".", 1)[-1])
            if kind.endswith("Dense"):
                found.dense.append(_read(path / "config.json", problems) or {})
    if not seen_pooling:
        problems.append(f"{MODULES} lists no Pooling module ({_POOLING})")
    return found


def _files(folder: Path, problems: list[str]) -> None:
    if not any((folder / name).exists() for name in ("tokenizer.json", "vocab.txt",
                                                     "tokenizer.model", "spiece.model")):
        problems.append("no tokenizer (tokenizer.json, vocab.txt or a sentencepiece model)")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        problems.append("no weights (model.safetensors or pytorch_model.bin)")


def _prompts(folder: Path, problems: list[str]) -> tuple[dict[str, str], str | None]:
    st = _read(folder / ST_CONFIG, problems) if (folder / ST_CONFIG).exists() else {}
    prompts, default = (st or {}).get("prompts") or {}, (st or {}).get("default_prompt_name")
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        problems.append(f"{ST_CONFIG}: prompts must map names to texts")
        return {}, None
    if default is not None and default not in prompts:
        problems.append(f"{ST_CONFIG}: default_prompt_name {default!r} is not one of its prompts")
    return dict(prompts), default


def native_max_tokens(folder: Path) -> int | None:
    """The token limit sentence-transformers applies: ``max_seq_length`` of
    sentence_bert_config.json, or (sentence-transformers 6 saves it there) the tokenizer's
    ``model_max_length``; None when neither says."""
    for name, key in ((BERT_CONFIG, "max_seq_length"), ("tokenizer_config.json",
                                                        "model_max_length")):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and 0 < value < _UNSET_LIMIT:
            return value
    return None


def inspect_folder(folder: Path) -> FolderFacts:
    """The facts of a sentence-transformers folder, or one error naming everything missing."""
    if not folder.is_dir():
        raise ModelUnavailableError(f"{folder} is not a folder; pass the folder a "
                                    "SentenceTransformer was saved to (model.save(path))")
    problems: list[str] = []
    modules = _modules(folder, problems)
    transformer_config = _read(folder / "config.json", problems) or {}
    _files(folder, problems)
    prompts, default = _prompts(folder, problems)
    pooling = modules.pooling if isinstance(modules.pooling, dict) else {}
    mode = _pooling_mode(pooling) if pooling else "none"
    dim = _dimension(pooling, mode, modules.dense) if pooling else None
    if pooling and dim is None:
        problems.append("the Pooling (or Dense) config holds no output dimension")
    max_tokens = native_max_tokens(folder) or transformer_config.get("max_position_embeddings")
    if not isinstance(max_tokens, int):
        problems.append(f"no token limit (max_seq_length in {BERT_CONFIG})")
    if problems or dim is None or not isinstance(max_tokens, int):
        raise ModelUnavailableError(f"{folder} is not a usable sentence-transformers folder: "
                                    + "; ".join(problems))
    exportable = (mode in ("mean", "cls") and all(t in _TAIL_OK for t in modules.tail)
                  and pooling.get("include_prompt", True) is not False)
    return FolderFacts(dim=dim, max_tokens=max_tokens, pooling=mode,
                       onnx_pooling=mode if exportable else "other",
                       normalized="Normalize" in modules.tail, prompts=prompts,
                       default_prompt_name=default,
                       tokenizer_json=(folder / "tokenizer.json").is_file())
