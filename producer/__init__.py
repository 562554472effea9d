"""The light producer: enqueue texts by use case, get numpy arrays back. Never imports torch."""

from embedq.config.errors import (
    BrokerUnavailableError,
    DeadLetteredError,
    EmbeddingFailedError,
    EmbedqError,
    EmbedTimeoutError,
    InvalidInputError,
    InvalidTextError,
    NoLiveWorkerError,
    OverloadedError,
    UnknownUseCaseError,
)
from embedq.producer.client import EmbeddingClient, RouteStatus
from embedq.producer.handle import EmbedJob
from embedq.producer.jobs import Embeddings

__all__ = [
    "BrokerUnavailableError",
    "DeadLetteredError",
    "EmbedJob",
    "EmbedTimeoutError",
    "EmbeddingClient",
    "EmbeddingFailedError",
    "Embeddings",
    "EmbedqError",
    "InvalidInputError",
    "InvalidTextError",
    "NoLiveWorkerError",
    "OverloadedError",
    "RouteStatus",
    "UnknownUseCaseError",
]
