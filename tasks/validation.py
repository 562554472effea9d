"""What makes one text embeddable, checked by the producer before enqueueing and again by the
worker (a message may come from elsewhere), so both sides give the same answer in the same words.
The list and dimension checks serve every edge that takes texts: the producer, the gateway and
the Celery task (`embedq.tasks.embed_task`).
"""

from __future__ import annotations

from collections.abc import Sequence

from embedq.config.errors import InvalidInputError, InvalidTextError
from embedq.config.registry import Registry, RouteSpec


def text_problem(text: object, max_chars: int) -> str | None:
    """Why ``text`` cannot be embedded, or None when it can."""
    if text is None:
        return "is None; expected a string"
    if not isinstance(text, str):
        return f"is a {type(text).__name__}; expected a string"
    if not text.strip():
        return "is empty or only whitespace"
    if len(text) > max_chars:
        return (f"has {len(text):,} characters, more than the limit of {max_chars:,} "
                "(EMBEDQ_MAX_TEXT_CHARS); split it into passages")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid UTF-8 (lone surrogate at character {exc.start})"
    return None


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
