"""`EmbedqEmbedding` as LlamaIndex uses a `BaseEmbedding`: single texts, batches and queries,
sync and async, and an index that retrieves by its vectors, through a real worker process."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import TextNode

from embedq.config.errors import UnknownUseCaseError
from embedq.integrations.llamaindex import EmbedqEmbedding

TEXTS = [f"passage {i} about {topic}" for i, topic in
         enumerate(["harbours", "volcanoes", "tax law", "bread", "chess"] * 15)]


def test_sync_methods_give_the_producers_vectors(hashing_client):
    model = EmbedqEmbedding("fast", client=hashing_client, embed_batch_size=16)
    expected = hashing_client.embed(TEXTS, "fast")
    np.testing.assert_allclose(model.get_text_embedding_batch(TEXTS), expected, rtol=1e-6)
    np.testing.assert_allclose(model.get_text_embedding(TEXTS[3]), expected[3], rtol=1e-6)
    np.testing.assert_allclose(model.get_query_embedding(TEXTS[4]), expected[4], rtol=1e-6)
    assert model.model_name == "embedq:fast"
    assert model.use_case == "fast"


async def test_async_methods_coalesce_concurrent_batches(hashing_client):
    model = EmbedqEmbedding("fast", client=hashing_client, embed_batch_size=8)
    expected = hashing_client.embed(TEXTS, "fast")
    batch, query, text = await asyncio.gather(model.aget_text_embedding_batch(TEXTS),
                                              model.aget_query_embedding(TEXTS[1]),
                                              model.aget_text_embedding(TEXTS[2]))
    np.testing.assert_allclose(batch, expected, rtol=1e-6)
    np.testing.assert_allclose([query, text], expected[1:3], rtol=1e-6)


def test_an_index_retrieves_by_embedq_vectors(hashing_client):
    model = EmbedqEmbedding("half", client=hashing_client)  # 32-d float16, widened to floats
    nodes = [TextNode(text=text, id_=str(i)) for i, text in enumerate(TEXTS[:5])]
    index = VectorStoreIndex(nodes, embed_model=model)
    found = index.as_retriever(similarity_top_k=1).retrieve(TEXTS[2])
    assert found[0].node.get_content() == TEXTS[2]


def test_an_unknown_use_case_fails_at_construction(hashing_client):
    with pytest.raises(UnknownUseCaseError, match="known: fast, half"):
        EmbedqEmbedding("serch", client=hashing_client)
