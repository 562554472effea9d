"""This repository's benchmark inputs from the shared evaluation data (``../shared/data``):
short sentences and long passages. Benchmarks only: no product command reads that folder (a
user has none); `embedq bench` generates its texts or takes ``--input``.

Sentences (8-60 words) come from STS-B dev and from SciFact abstracts split at sentence ends,
the kind of text MEASURED.md's raw figures used; passages are whole SciFact abstracts, for the
mixed-length runs. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import re
from pathlib import Path

from embedq.config.errors import ConfigError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def data_dir(explicit: Path | None = None) -> Path:
    """The shared data folder: explicit, ``EMBEDQ_BENCH_DATA``, or ``../shared/data``."""
    candidates = [explicit] if explicit else []
    if env := os.environ.get("EMBEDQ_BENCH_DATA"):
        candidates.append(Path(env))
    here = Path(__file__).resolve()
    candidates += [Path.cwd() / "../shared/data", here.parents[2] / "shared" / "data"]
    for candidate in candidates:
        if candidate is not None and (candidate / "stsb_dev.csv").is_file():
            return candidate.resolve()
    raise ConfigError("benchmark data not found: pass --data DIR (the folder with stsb_dev.csv "
                      "and scifact/) or set EMBEDQ_BENCH_DATA")


def _abstracts(folder: Path) -> list[str]:
    with gzip.open(folder / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [f"{doc['title']} {doc['text']}".strip() for doc in map(json.loads, handle)]


def sentences(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` distinct English sentences of 8-60 words, shuffled."""
    with (folder / "stsb_dev.csv").open(encoding="utf-8", newline="") as handle:
        pool = [row[key] for row in csv.DictReader(handle) for key in ("sentence1", "sentence2")]
    for abstract in _abstracts(folder):
        pool.extend(_SENTENCE_END.split(abstract))
    distinct = [s.strip() for s in dict.fromkeys(pool) if 8 <= len(s.split()) <= 60]
    if len(distinct) < count:
        raise ConfigError(f"only {len(distinct)} distinct sentences in {folder}, asked {count}")
    random.Random(seed).shuffle(distinct)
    return distinct[:count]


def passages(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` abstracts of 150-300 words (about 200-400 MiniLM tokens)."""
    pool = [a for a in _abstracts(folder) if 150 <= len(a.split()) <= 300]
    random.Random(seed).shuffle(pool)
    return pool[:count]
