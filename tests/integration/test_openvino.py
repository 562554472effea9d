"""OpenVINO candidates on the real CPU: PyTorch's vectors from each one this machine can run
(fp32 equal, bf16 only where the CPU has bf16 units, NNCF int8 at the 0.99 bar), the reason for
each one it cannot, pool processes without torch, and a real worker serving one.

Which OpenVINO candidates run here is decided by feature detection (`skipped_candidates`), the
same call the worker makes, so these tests hold on an AVX2-only CPU too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from structlog.testing import capture_logs

from embedq.config.registry import Precision, load_registry
from embedq.config.settings import Settings
from embedq.worker.models.candidates import ONNX_INT8, OPENVINO, OPENVINO_INT8, Candidate
from embedq.worker.models.cpu import read_cpu_features
from embedq.worker.models.decision import DecisionFile, choose
from embedq.worker.models.onnx_export import CHECK_TEXTS, RECIPE
from embedq.worker.models.openvino_export import (
    INT8_RECIPE,
    WEIGHTS_RECIPE,
    int8_folder_name,
)
from embedq.worker.models.probe import sts_sample
from embedq.worker.models.selection import (
    allowed_candidates,
    build,
    plan,
    reset_plans,
    skipped_candidates,
)
from embedq.worker.models.sources import resolve_source
from tests.support import make_client, wait_for_consumers

pytestmark = pytest.mark.model
TEXTS = ["A man is playing a guitar.", "kids playing football in the park after school",
         "Stocks fell sharply on Monday after the central bank raised interest rates again."]


def _cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.asarray((got * want).sum(1) / np.linalg.norm(got, axis=1)
                      / np.linalg.norm(want, axis=1))


@pytest.fixture(autouse=True)
def _fresh_plans():
    reset_plans()
    yield
    reset_plans()


@pytest.mark.parametrize("name", [str(c) for c in OPENVINO])
def test_each_openvino_candidate_gives_pytorchs_vectors_or_is_skipped_with_its_reason(
        name, model_cache):
    from sentence_transformers import SentenceTransformer

    candidate, cpu = Candidate.parse(name), read_cpu_features()
    spec = load_registry().model("minilm")
    source = resolve_source(spec, model_cache)
    skipped = skipped_candidates(cpu)
    if candidate in skipped:  # e.g. openvino-bf16 on an AVX2-only EPYC
        assert candidate not in allowed_candidates(spec, Precision.AUTO, "auto", cpu)
        assert skipped[candidate] in ("no bf16 units on this CPU",
                                      "the 'openvino' package is not installed",
                                      "the 'nncf' package is not installed")
        return
    encoder = build(spec, source, Settings(model_cache_dir=model_cache), candidate, 1)
    reference = SentenceTransformer(source.location, device="cpu")
    sentences = sts_sample().sentences
    got = np.concatenate([encoder.encode_batch(sentences[i:i + 32])
                          for i in range(0, len(sentences), 32)])
    cosines = _cosines(got, reference.encode(sentences))
    prompted = _cosines(encoder.encode_batch(TEXTS, prompt="query: "),
                        reference.encode(TEXTS, prompt="query: "))
    assert (encoder.backend, encoder.precision) == ("openvino", candidate.precision.value)
    if candidate.precision is Precision.INT8:  # the probe's bar, on texts not calibrated on
        assert cosines.mean() >= 0.99, cosines.mean()
        assert prompted.min() >= 0.98, prompted
        assert encoder.revision == f"{source.revision}+{RECIPE}+openvino-int8-{INT8_RECIPE}"
        assert encoder.weight_bytes < 40e6  # int8 weights: a quarter of fp32's 90 MB
    else:  # fp32 equal to PyTorch; bf16 matmuls keep fp32's space
        floor = 0.9999 if candidate.precision is Precision.FP32 else 0.999
        assert min(cosines.min(), prompted.min()) >= floor, (cosines.min(), prompted)
        assert encoder.revision == source.revision  # shares PyTorch's cache entries
    assert encoder.count_tokens(["word " * 600])[0] == 602  # untruncated count


def test_the_weights_recipe_keeps_every_text_close_where_static_int8_lost_long_ones(model_cache):
    """mpnet's OpenVINO int8 (models.json ``int8.openvino: weights``): int8 weights, activation
    ranges taken per input at run time, so a long repetition stays close too (mpnet's static
    int8 fell to cosine 0.28 on it). Built here on MiniLM under that recipe: quicker, same code."""
    from sentence_transformers import SentenceTransformer

    mpnet = load_registry().model("mpnet")
    assert mpnet.int8 is not None
    assert mpnet.int8.openvino == "weights"
    assert int8_folder_name(mpnet) == f"openvino-int8-{WEIGHTS_RECIPE}"
    minilm = load_registry().model("minilm")
    assert minilm.int8 is not None
    assert minilm.int8.openvino == "static"
    spec = minilm.model_copy(update={"int8": minilm.int8.model_copy(
        update={"openvino": "weights"})})
    skipped = skipped_candidates(read_cpu_features())
    if OPENVINO_INT8 in skipped:
        assert skipped[OPENVINO_INT8] in ("the 'openvino' package is not installed",
                                          "the 'nncf' package is not installed")
        return
    source = resolve_source(spec, model_cache)
    encoder = build(spec, source, Settings(model_cache_dir=model_cache), OPENVINO_INT8, 1)
    reference = SentenceTransformer(source.location, device="cpu")
    sentences = sts_sample().sentences
    got = np.concatenate([encoder.encode_batch(sentences[i:i + 32])
                          for i in range(0, len(sentences), 32)])
    assert _cosines(got, reference.encode(sentences)).mean() >= 0.999
    # One text at a time: the check texts run from 5 words to a truncated 600-word repetition.
    checks = _cosines(np.concatenate([encoder.encode_batch([t]) for t in CHECK_TEXTS]),
                      reference.encode(CHECK_TEXTS))
    assert checks.min() >= 0.99, checks
    assert (encoder.backend, encoder.precision) == ("openvino", "int8")
    assert encoder.revision == f"{source.revision}+{RECIPE}+openvino-int8-{WEIGHTS_RECIPE}"
    assert encoder.weight_bytes < 30e6  # int8 weights, embedding table included: fp32's 90 MB / 4


def test_an_openvino_worker_process_never_imports_torch(model_cache):
    cpu = read_cpu_features()
    candidate = next((c for c in OPENVINO if c not in skipped_candidates(cpu)), None)
    if candidate is None:
        assert set(skipped_candidates(cpu)) == set(OPENVINO)  # nothing of OpenVINO here
        return
    spec = load_registry().model("minilm")
    build(spec, resolve_source(spec, model_cache), Settings(model_cache_dir=model_cache),
          candidate, 1)  # exported here, in the parent's role
    code = ("import sys; from embedq.config.registry import Precision, load_registry; "
            "from embedq.worker.models.loading import load_encoder; "
            "e = load_encoder(load_registry(), 'minilm', Precision.AUTO, threads=1); "
            "e.encode_batch(['a sentence']); "
            "print(json.dumps([type(e).__name__, 'torch' in sys.modules]))")
    run = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True,
                         env={**os.environ, "EMBEDQ_FP32_BACKEND": "auto",
                              "EMBEDQ_AUTO_CANDIDATES": json.dumps([str(candidate)])})
    assert json.loads(run.stdout.strip().splitlines()[-1]) == ["OpenVinoEncoder", False]


def test_a_measured_int8_choice_includes_openvino_and_keeps_the_bar(model_cache):
    spec = load_registry().model("minilm")
    source = resolve_source(spec, model_cache)
    settings = Settings(model_cache_dir=model_cache, auto_candidates=None)
    with capture_logs() as logs:
        chosen = plan(spec, source, Precision.INT8, settings)
    assert chosen.candidate.precision is Precision.INT8
    cpu = read_cpu_features()
    if OPENVINO_INT8 in skipped_candidates(cpu):
        assert str(chosen.candidate) == "onnx-int8"
        return
    # Measured now or earlier in this session (auto measures both too): the file says what won.
    measured = DecisionFile(model_cache, "minilm", source.revision, cpu).load()
    both = [ONNX_INT8, OPENVINO_INT8]
    assert set(both) <= set(measured)
    assert chosen.candidate == choose(measured, both)[0]
    decided = next(e for e in logs if e["event"] == "precision_decided")
    assert (decided["asked"], decided["chosen"]) == ("int8", str(chosen.candidate))


def test_a_real_worker_serves_openvino_int8_through_its_forked_pool(redis_server, start_worker,
                                                                     model_cache):
    from sentence_transformers import SentenceTransformer

    cpu = read_cpu_features()
    # Two forked pool processes: each compiles its own OpenVINO model after the fork.
    start_worker("minilm", "int8", None, "-c", "2",
                 EMBEDQ_AUTO_CANDIDATES=json.dumps([str(OPENVINO_INT8)]))
    wait_for_consumers(redis_server.url, "embed.minilm.int8", timeout=600)
    with make_client(redis_server.url, None, cache_model_info_ttl_s=0) as client:
        got = client.embed_detailed(TEXTS * 20, "etl", timeout=300)  # several batches
    recipe = ("openvino-int8-" + INT8_RECIPE if OPENVINO_INT8 not in skipped_candidates(cpu)
              else "int8-")
    assert got.precision == ["int8"] * 60
    assert recipe in got.revision[0]
    want = SentenceTransformer(
        resolve_source(load_registry().model("minilm"), model_cache).location, device="cpu"
    ).encode(TEXTS * 20)
    assert _cosines(got.vectors.astype(np.float32), want).min() >= 0.98
