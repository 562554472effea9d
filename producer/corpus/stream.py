"""The one place a corpus job talks to the producer: blocks of detailed results, in input order.

The job needs, per row, the vector, the model and revision that made it, the precision, the
cached and truncated flags, and a failure reason instead of an exception for the rows that
failed: the client's `embed_many_detailed`. Everything else about the message path (chunking,
coalescing, the reply path, resending lost chunks) stays the client's business.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain

from embedq.producer.client import EmbeddingClient
from embedq.producer.jobs import Embeddings


def detailed_blocks(client: EmbeddingClient, texts: Iterable[str], use_case: str | None, *,
                    chunk_size: int, max_in_flight: int,
                    timeout: float | None) -> Iterator[Embeddings]:
    """Embed ``texts`` with at most ``max_in_flight`` chunks in flight; a block per chunk.

    No text to send is a normal end for a job, not an error as it is for ``embed_many``: a run
    resumed after its last row was durable (killed before or during the merge), an empty input,
    or an input whose remaining rows all failed their checks has nothing to send, and must go on
    to the merge. Nothing is sent, and nothing asked of the client, until the first text is read.
    """
    source = iter(texts)
    first = next(source, None)
    if first is None:
        return
    yield from client.embed_many_detailed(chain((first,), source), use_case,
                                          chunk_size=chunk_size, max_in_flight=max_in_flight,
                                          timeout=timeout, progress=False)


def live_workers(client: EmbeddingClient, use_case: str | None) -> int:
    """Workers consuming the route's queue now (at least 1, so a job can wait for one)."""
    return max(1, client.route_status(use_case).queue.consumers)
