"""Settings, the model registry and the use-case routes. Imports neither Celery nor torch.

The error tree lives in `embedq.config.errors` (producers also find it in `embedq.producer`).
"""

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
    "ModelSpec",
    "OutputDtype",
    "Precision",
    "Registry",
    "RouteSpec",
    "Settings",
    "load_registry",
    "load_settings",
]
