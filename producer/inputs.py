"""What a producer accepts, checked before anything is enqueued, every refusal a typed error
that names the item and the fix."""

from __future__ import annotations

from embedq.config.errors import InvalidInputError
from embedq.tasks.validation import check_dim, check_texts

__all__ = ["check_dim", "check_texts", "positive"]


def positive(name: str, value: object, *, allow_float: bool = False) -> int:
    """A positive whole number (or any positive number with ``allow_float``), else an error."""
    kinds = (int, float) if allow_float else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "number" if allow_float else "whole number"
        raise InvalidInputError(f"{name} must be a positive {kind}, got {value!r}")
    return value  # type: ignore[return-value]  # a float only where allow_float says so
