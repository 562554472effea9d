"""The gateway with the real MiniLM behind it (packaged routes): what a user of ``search`` gets
through the OpenAI SDK is what the Python producer gets, and it means what MiniLM means."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.support import make_client, wait_for_consumers

pytestmark = pytest.mark.model


def test_search_through_the_openai_sdk(redis_server, start_worker, start_gateway):
    start_worker("minilm", "fp32", None, "-c", "1")
    wait_for_consumers(redis_server.url, "embed.minilm.fp32")
    _, url = start_gateway(None)
    texts = ["red running shoes", "crimson sneakers for jogging", "how to file a tax return"]
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as sdk:
        reply = sdk.embeddings.create(model="search", input=texts, timeout=60)
    vectors = np.array([item.embedding for item in reply.data])
    with make_client(redis_server.url, None) as client:
        expected = client.embed_detailed(texts, "search", timeout=60)
    # The producer's call reads what the gateway's left in the vector cache, stored as float16.
    assert all(expected.cached)
    np.testing.assert_allclose(vectors, expected.vectors, atol=1e-3)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert reply.usage.prompt_tokens == sum(expected.tokens) > len(texts)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3
