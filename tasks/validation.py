"""What makes one text embeddable, checked by the producer before enqueueing and again by the
worker (a message may come from elsewhere), so both sides give the same answer in the same words.
"""

from __future__ import annotations


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
