"""The README's chord with the real MiniLM: 20 embed tasks into a user's callback, through a real
embed worker and the user's own Celery worker; the vectors match an in-process encode."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.celery_user import load_user_app, start_user_worker
from tests.support import minilm_dir, wait_for_consumers

# Another module of the session may have loaded the example app already (Celery shares each
# app's tasks with every app by name, so this load names them again).
pytestmark = [pytest.mark.model,
              pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")]
DOCS = [f"Paragraph {n}: the harbour froze early that winter, and the boats stayed in "
        f"for {n + 2} weeks." for n in range(20)]


def test_chord_of_twenty_minilm_tasks_into_a_user_callback(redis_server, start_worker):
    from sentence_transformers import SentenceTransformer

    start_worker("minilm", "fp32", None, "-c", "1")  # the packaged routes: search -> minilm
    wait_for_consumers(redis_server.url, "embed.minilm.fp32")
    user = load_user_app(redis_server.url, "json", None)
    worker = start_user_worker(redis_server.url, "json", None, user)
    try:
        result = user.batch_of_many(DOCS)  # use case "search", the default
        got = np.array(result.get(timeout=120), dtype=np.float32)
        result.backend.remove_pending_result(result)
    finally:
        worker.stop()
    want = SentenceTransformer(str(minilm_dir()), device="cpu").encode(
        DOCS, convert_to_numpy=True, normalize_embeddings=True)
    assert got.shape == (20, 384)
    cosine = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want,
                                                                                        axis=1)
    assert cosine.min() >= 0.9999, cosine
