"""What both RAG adapters do: embed through a use case and hand back plain lists of floats.

The route, the output dimension and the timeout are settled once, when the adapter is built, so
an unknown use case or a dimension the model does not offer fails at start-up, not at the first
document. LangChain and LlamaIndex expect ``embed([])`` to be ``[]``; the producer refuses an
empty request, so the adapters answer it without a round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedq.config.precisions import OutputDtype
from embedq.producer import EmbeddingClient
from embedq.producer.inputs import check_dim
from embedq.tasks.vectors import to_float32


@dataclass(frozen=True, slots=True)
class UseCaseEmbedder:
    """A client bound to one use case, dimension and timeout."""

    client: EmbeddingClient
    use_case: str
    dim: int
    timeout: float
    output_dtype: OutputDtype

    @classmethod
    def create(cls, use_case: str | None = None, *, client: EmbeddingClient | None = None,
               dim: int | None = None, timeout: float | None = None) -> UseCaseEmbedder:
        """Bind ``client`` (default: one from ``EMBEDQ_*`` settings) to a use case."""
        client = client or EmbeddingClient()
        route = client.registry.route(use_case)
        return cls(client, route.name, check_dim(client.registry, route, dim),
                   client.timeout(timeout), route.output_dtype)

    def _lists(self, vectors: np.ndarray) -> list[list[float]]:
        rows: list[list[float]] = to_float32(vectors, self.output_dtype, self.dim).tolist()
        return rows

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        if not texts:
            return []
        return self._lists(self.client.embed(list(texts), self.use_case, timeout=self.timeout,
                                             dim=self.dim))

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        """`embed` without blocking the event loop."""
        if not texts:
            return []
        return self._lists(await self.client.aembed(list(texts), self.use_case,
                                                    timeout=self.timeout, dim=self.dim))
