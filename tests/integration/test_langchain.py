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
from tests.support import make_client


@pytest.fixture(scope="module")
def client(redis_server, start_worker, hashing_config):
    start_worker("hashing", "fp32", hashing_config, "-c", "1").wait_for(r"ready\.")
    client = make_client(redis_server.url, hashing_config)
    yield client
    client.close()


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
    def _client(self, client):
        self.client = client

    @property
    def embeddings_class(self) -> type[EmbedqEmbeddings]:
        return EmbedqEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"use_case": "fast", "client": self.client}


def test_vectors_are_the_producers_and_a_vector_store_finds_by_them(client):
    embeddings = EmbedqEmbeddings("fast", client=client)
    texts = ["red running shoes", "a quiet lake at dawn", "tax forms for 2025"]
    np.testing.assert_allclose(embeddings.embed_documents(texts), client.embed(texts, "fast"),
                               rtol=1e-6)
    assert embeddings.embed_documents([]) == []
    store = InMemoryVectorStore.from_documents([Document(page_content=t) for t in texts],
                                               embeddings)
    assert store.similarity_search("a quiet lake at dawn", k=1)[0].page_content == texts[1]


async def test_async_and_matryoshka_sizes(client):
    embeddings = EmbedqEmbeddings("half", client=client)  # a 32-d float16 route
    vector = await embeddings.aembed_query("some text")
    assert len(vector) == embeddings.dim == 32
    assert isinstance(vector[0], float)
    assert await embeddings.aembed_documents([]) == []


def test_mistakes_fail_at_construction_with_embedqs_errors(client):
    with pytest.raises(UnknownUseCaseError, match="known: fast, half"):
        EmbedqEmbeddings("serch", client=client)
    with pytest.raises(InvalidInputError, match="choose one of 64"):
        EmbedqEmbeddings("fast", client=client, dim=48)
