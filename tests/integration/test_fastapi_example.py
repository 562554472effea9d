"""The README's FastAPI example, run as written against a real worker: shared client, many
concurrent requests, a bad query answered 400, shutdown closes the client."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient  # the test extra has FastAPI; embedq does not need it

from embedq.producer import EmbedqError
from tests.support import HASHING_MODEL, expected_hashing, wait_for_consumers, write_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"


def test_the_fastapi_example_serves_concurrent_requests(redis_server, start_worker, tmp_path,
                                                         monkeypatch):
    config = write_config(tmp_path, {"hashing": HASHING_MODEL},
                          {"search": {"model": "hashing", "precision": "fp32"}},
                          default="search")
    start_worker("hashing", "fp32", config, "-c", "1")
    wait_for_consumers(redis_server.url, "embed.hashing.fp32")
    monkeypatch.setenv("EMBEDQ_REDIS_URL", redis_server.url)
    monkeypatch.setenv("EMBEDQ_CONFIG_DIR", str(config))
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    queries = [f"query number {n}" for n in range(400)]
    with TestClient(module.app) as http, ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda q: http.get("/embed", params={"q": q}), queries))
        refused = http.get("/embed", params={"q": "   "})
    assert [r.status_code for r in replies] == [200] * len(queries)
    got = np.array([r.json()["vector"] for r in replies], dtype=np.float32)
    np.testing.assert_allclose(got, expected_hashing(config, queries), atol=1e-6)
    assert refused.status_code == 400
    assert "whitespace" in refused.json()["detail"] or "empty" in refused.json()["detail"]
    with pytest.raises(EmbedqError, match="closed"):  # the app's shutdown closed the client
        module.client.embed(["after shutdown"])
