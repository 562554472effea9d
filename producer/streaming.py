"""Streaming a corpus through the queue: a bounded window of chunks, blocks yielded in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING

from embedq.config.errors import EmbeddingFailedError, InvalidInputError, InvalidTextError
from embedq.producer.jobs import Embeddings
from embedq.producer.progress import progress_bar

if TYPE_CHECKING:
    from embedq.producer.client import EmbeddingClient
    from embedq.producer.handle import EmbedJob


def check_stream(texts: object) -> Iterable[str]:
    """``texts`` if it can be streamed: any iterable of strings but a string itself."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Iterable):
        raise InvalidInputError(
            f"texts must be an iterable of strings (a list, a file, a generator), got a "
            f"{type(texts).__name__}; wrap a single text as [text]")
    return texts


def stream_jobs(client: EmbeddingClient, texts: Iterable[str], use_case: str | None, *,
                size: int, window: int, wait: float, progress: bool | None, dim: int | None,
                raise_on_errors: bool, prompt_name: str | None = None,
                prompt: str | None = None) -> Iterator[Embeddings]:
    """Submit chunks of ``size`` while at most ``window`` are unanswered; yield them in order.

    Errors name positions in the whole stream, not in a chunk. An empty stream is an error,
    like an empty list given to ``embed``.
    """
    total = len(texts) if isinstance(texts, Sequence) else None
    source = iter(texts)
    pending: deque[tuple[int, EmbedJob]] = deque()
    submitted = 0
    with progress_bar(total=total, enabled=progress, unit="text") as bar:
        while True:
            while len(pending) < window and (chunk := list(islice(source, size))):
                try:
                    job = client.submit(chunk, use_case, dim=dim, timeout=wait, bulk=True,
                                        prompt_name=prompt_name, prompt=prompt)
                    pending.append((submitted, job))
                except InvalidTextError as exc:
                    raise InvalidTextError(submitted + exc.index, exc.problem) from exc
                submitted += len(chunk)
            if not pending:
                if not submitted:
                    raise InvalidInputError("texts is empty; pass at least one text")
                return
            start, job = pending.popleft()
            try:
                block = job.get_detailed(wait, raise_on_errors=raise_on_errors)
            except EmbeddingFailedError as exc:
                moved = {start + position: problem for position, problem in exc.errors.items()}
                raise EmbeddingFailedError(moved, exc.partial) from exc
            bar.update(job.size)
            yield block
