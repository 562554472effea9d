"""The one place a corpus job talks to the producer: blocks of detailed results, in input order.

The job needs, per row, the vector, the model and revision that made it, the precision, the
cached and truncated flags, and a failure reason instead of an exception for the rows that
failed. Everything else about the message path (chunking, coalescing, the reply path, resending
lost chunks) stays the producer client's business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from itertools import islice

from embedq.producer.client import EmbeddingClient, Embeddings, EmbedJob
from embedq.tasks.names import route_queue


@dataclass(frozen=True, slots=True)
class DetailedBlock(Embeddings):
    """One chunk's results; ``errors`` maps a position in the block to why that row failed."""

    errors: dict[int, str] = field(default_factory=dict)


def detailed_blocks(client: EmbeddingClient, texts: Iterable[str], use_case: str | None, *,
                    chunk_size: int, max_in_flight: int,
                    timeout: float | None) -> Iterator[DetailedBlock]:
    """Embed ``texts`` with at most ``max_in_flight`` chunks on the queue; a block per chunk."""
    pending: deque[EmbedJob] = deque()
    source = iter(texts)
    while True:
        while len(pending) < max_in_flight and (chunk := list(islice(source, chunk_size))):
            pending.append(client.submit(chunk, use_case))
        if not pending:
            return
        result = pending.popleft().get_detailed(timeout)
        yield DetailedBlock(**{f.name: getattr(result, f.name) for f in fields(result)})


def live_workers(client: EmbeddingClient, use_case: str | None) -> int:
    """Workers consuming the route's queue now (at least 1, so a job can wait for one)."""
    route = client.serving(client.registry.route(use_case))
    return max(1, client._live_workers([route_queue(route)])[0])
