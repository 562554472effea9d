"""LangChain's `Embeddings` over embedq: documents and queries go to a use case's workers.

    from embedq.integrations.langchain import EmbedqEmbeddings
    embeddings = EmbedqEmbeddings(use_case="search")       # settings from EMBEDQ_* variables
    store = InMemoryVectorStore.from_texts(texts, embeddings)

Checked by LangChain's own standard unit and integration suites (``langchain-tests``).
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from embedq.integrations.embedder import UseCaseEmbedder
from embedq.producer import EmbeddingClient


class EmbedqEmbeddings(Embeddings):
    """Embeds through the workers of one use case (default: the default route).

    ``client`` is shared if given (one per process is best: concurrent calls coalesce); ``dim``
    picks a Matryoshka size the route's model offers; ``timeout`` defaults to EMBEDQ_TIMEOUT_S.
    """

    def __init__(self, use_case: str | None = None, *, client: EmbeddingClient | None = None,
                 dim: int | None = None, timeout: float | None = None) -> None:
        self._embedder = UseCaseEmbedder.create(use_case, client=client, dim=dim,
                                                timeout=timeout)
        #: The producer client doing the work, the route the texts go to, the length of every
        #: vector and the seconds a call waits for its vectors.
        self.client: EmbeddingClient = self._embedder.client
        self.use_case: str = self._embedder.use_case
        self.dim: int = self._embedder.dim
        self.timeout: float = self._embedder.timeout

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per document, in order."""
        return self._embedder.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return self._embedder.embed([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """`embed_documents` without blocking the event loop."""
        return await self._embedder.aembed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """`embed_query` without blocking the event loop."""
        return (await self._embedder.aembed([text]))[0]
