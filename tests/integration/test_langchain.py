"""`EmbedqEmbeddings` against LangChain's own standard suites (``langchain-tests``), the unit
suite without a broker and the integration suite against a real worker, plus a vector store.
"""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from embedq.config.errors import InvalidInputError, UnknownUseCaseError
from embedq.integrations.langchain import EmbedqEmbeddings


class TestEmbedqEmbeddingsUnit(EmbeddingsUnitTests):
    """Construction, including from ``EMBEDQ_*`` variables, needs no broker."""

    @property
    def embeddings_class(self) -> type[EmbedqEmbeddings]:
        return EmbedqEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"use_case": "search"}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {"EMBEDQ_TIMEOUT_S": "7"}, {"use_case": "etl"}, {"timeout": 7.0,
                                                                 "use_case": "etl"}


class TestEmbedqEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """The suite's sync and async calls, through a real worker process."""

    @pytest.fixture(autouse=True)
    def _client(self, hashing_client):
        self.client = hashing_client

    @property
    def embeddings_class(self) -> type[EmbedqEmbeddings]:
        return EmbedqEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"use_case": "fast", "client": self.client}


def test_vectors_are_the_producers_and_a_vector_store_finds_by_them(hashing_client):
    embeddings = EmbedqEmbeddings("fast", client=hashing_client)
    texts = ["red running shoes", "a quiet lake at dawn", "tax forms for 2025"]
    expected = hashing_client.embed(texts, "fast")
    np.testing.assert_allclose(embeddings.embed_documents(texts), expected, rtol=1e-6)
    assert embeddings.embed_documents([]) == []
    store = InMemoryVectorStore.from_documents([Document(page_content=t) for t in texts],
                                               embeddings)
    assert store.similarity_search("a quiet lake at dawn", k=1)[0].page_content == texts[1]


async def test_async_and_matryoshka_sizes(hashing_client):
    embeddings = EmbedqEmbeddings("half", client=hashing_client)  # a 32-d float16 route
    vector = await embeddings.aembed_query("some text")
    assert len(vector) == embeddings.dim == 32
    assert isinstance(vector[0], float)
    assert await embeddings.aembed_documents([]) == []


def test_mistakes_fail_at_construction_with_embedqs_errors(hashing_client):
    with pytest.raises(UnknownUseCaseError, match="known: fast, half"):
        EmbedqEmbeddings("serch", client=hashing_client)
    with pytest.raises(InvalidInputError, match="choose one of 64"):
        EmbedqEmbeddings("fast", client=hashing_client, dim=48)
