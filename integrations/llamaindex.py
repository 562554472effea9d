"""LlamaIndex's `BaseEmbedding` over embedq: nodes and queries go to a use case's workers.

    from embedq.integrations.llamaindex import EmbedqEmbedding
    Settings.embed_model = EmbedqEmbedding(use_case="search")   # llama_index.core.Settings

Batches of ``embed_batch_size`` texts become one producer call each; the async methods await
the asyncio client, so concurrent batches coalesce on the way to the workers.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import PrivateAttr

from embedq.integrations.embedder import UseCaseEmbedder
from embedq.producer import EmbeddingClient

_BATCH = 64  # texts per producer call: what a worker's forward pass takes well


class EmbedqEmbedding(BaseEmbedding):
    """Embeds through the workers of one use case (default: the default route).

    ``client`` is shared if given; ``dim`` picks a Matryoshka size the route's model offers;
    ``timeout`` defaults to EMBEDQ_TIMEOUT_S.
    """

    _embedder: UseCaseEmbedder = PrivateAttr()

    def __init__(self, use_case: str | None = None, *, client: EmbeddingClient | None = None,
                 dim: int | None = None, timeout: float | None = None, **kwargs: Any) -> None:
        embedder = UseCaseEmbedder.create(use_case, client=client, dim=dim, timeout=timeout)
        kwargs.setdefault("model_name", f"embedq:{embedder.use_case}")
        kwargs.setdefault("embed_batch_size", _BATCH)
        super().__init__(**kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this class under."""
        return "EmbedqEmbedding"

    @property
    def use_case(self) -> str:
        """The use case (route) the texts go to."""
        return self._embedder.use_case

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embedder.embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._embedder.aembed([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embedder.embed([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._embedder.aembed([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embedder.embed(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._embedder.aembed(texts)
