"""`EmbedJob`: what ``submit`` returns, a request on its way that a caller waits for or cancels."""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

import numpy as np

from embedq.producer.jobs import Embeddings, Job

if TYPE_CHECKING:
    from embedq.producer.client import EmbeddingClient


class EmbedJob:
    """A submitted request: its texts are on their way; `get` waits for them in input order."""

    def __init__(self, client: EmbeddingClient, job: Job) -> None:
        self._client = client
        self.job = job

    @property
    def size(self) -> int:
        """How many texts were submitted (repeats included)."""
        return self.job.size

    def ready(self) -> bool:
        """True once every text is answered (or the request failed)."""
        return self.job.done()

    @property
    def messages(self) -> int:
        """How many messages carried this request's texts (0: the cache answered them all);
        final once the request is done. Coalesced messages carry other callers' texts too."""
        return self.job.messages

    def remaining(self) -> float:
        """Seconds until the request's deadline (0 once it has passed)."""
        return max(0.0, self.job.deadline - time.time())

    def cancel(self) -> bool:
        """Give up on the request: workers skip its texts, ``get`` raises ``CancelledError``.
        False if it was already done."""
        if not self.job.cancel():
            return False
        self._client.cancelled(self.job)
        return True

    def get(self, timeout: float | None = None) -> np.ndarray:
        """The ``(len(texts), dim)`` array; raises on failure, or once ``timeout`` seconds
        (default: until the request's deadline) have passed."""
        return self.get_detailed(timeout).vectors

    def get_detailed(self, timeout: float | None = None, *,
                     raise_on_errors: bool = True) -> Embeddings:
        """The vectors with per-item metadata; item failures raise `EmbeddingFailedError`
        (or, with ``raise_on_errors=False``, are listed in ``errors`` with NaN rows)."""
        wait = self.remaining() if timeout is None else self._client.timeout(timeout)
        try:
            self.job.future.result(wait)
        except FutureTimeout:
            raise self._client.timeout_error(self, wait) from None
        return self.job.result(raise_on_errors=raise_on_errors)
