"""The light producer: enqueue texts by use case, get numpy arrays back. Never imports torch."""

from embedq.config.errors import (
    EmbeddingFailedError,
    EmbedqError,
    EmbedTimeoutError,
    InvalidInputError,
    InvalidTextError,
    UnknownUseCaseError,
)
from embedq.producer.client import EmbeddingClient, Embeddings, EmbedJob

__all__ = [
    "EmbedJob",
    "EmbedTimeoutError",
    "EmbeddingClient",
    "EmbeddingFailedError",
    "Embeddings",
    "EmbedqError",
    "InvalidInputError",
    "InvalidTextError",
    "UnknownUseCaseError",
]
