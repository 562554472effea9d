"""What a producer accepts, checked before anything is enqueued, every refusal a typed error
that names the item and the fix."""

from __future__ import annotations

from collections.abc import Sequence

from embedq.config.errors import InvalidInputError, InvalidTextError
from embedq.config.registry import Registry, RouteSpec
from embedq.tasks.validation import text_problem


def check_texts(texts: object, max_chars: int) -> list[str]:
    """``texts`` as a list, or an error naming every bad item (the first in the message)."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise InvalidInputError(
            f"texts must be a list of strings, got a {type(texts).__name__}; "
            "wrap a single text as [text]"
        )
    if not texts:
        raise InvalidInputError("texts is empty; pass at least one text")
    problems = {i: p for i, text in enumerate(texts) if (p := text_problem(text, max_chars))}
    if problems:
        index, problem = next(iter(problems.items()))
        error = InvalidTextError(index, problem)
        error.problems = problems  # type: ignore[attr-defined]  # every bad item, not just one
        raise error
    return list(texts)


def check_dim(registry: Registry, route: RouteSpec, dim: object) -> int:
    """The output dimension for a request: the route's, or a Matryoshka size its model offers."""
    default = registry.output_dim(route)
    if dim is None:
        return default
    spec = registry.model(route.model)
    allowed = sorted({default, *(d for d in spec.matryoshka_dims if d <= spec.dim)},
                     reverse=True)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim not in allowed:
        raise InvalidInputError(
            f"dim {dim!r} is not offered by use case {route.name!r} (model {route.model}); "
            f"choose one of {', '.join(map(str, allowed))}")
    return dim


def positive(name: str, value: object, *, allow_float: bool = False) -> int:
    """A positive whole number (or any positive number with ``allow_float``), else an error."""
    kinds = (int, float) if allow_float else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "number" if allow_float else "whole number"
        raise InvalidInputError(f"{name} must be a positive {kind}, got {value!r}")
    return value  # type: ignore[return-value]  # a float only where allow_float says so
