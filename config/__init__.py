"""Settings, the model registry and the use-case routes. Imports neither Celery nor torch."""

from embedq.config.errors import (
    ConfigError,
    EmbeddingFailedError,
    EmbedqError,
    EmbedTimeoutError,
    InvalidInputError,
    InvalidTextError,
    ModelUnavailableError,
    PayloadError,
    UnknownModelError,
    UnknownUseCaseError,
)
from embedq.config.registry import (
    ModelSpec,
    OutputDtype,
    Precision,
    Registry,
    RouteSpec,
    load_registry,
)
from embedq.config.settings import Settings, load_settings

__all__ = [
    "ConfigError",
    "EmbedTimeoutError",
    "EmbeddingFailedError",
    "EmbedqError",
    "InvalidInputError",
    "InvalidTextError",
    "ModelSpec",
    "ModelUnavailableError",
    "OutputDtype",
    "PayloadError",
    "Precision",
    "Registry",
    "RouteSpec",
    "Settings",
    "UnknownModelError",
    "UnknownUseCaseError",
    "load_registry",
    "load_settings",
]
