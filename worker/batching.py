"""The batching policy, in one place: what a claim may take, how long to linger, how passes are cut.

A consumer claims everything waiting up to a budget of texts (so batches grow with load by
themselves), lingers a few milliseconds for more only while traffic is flowing (a lone request
never waits), and the embedder cuts what was claimed into forward passes of texts of like
length, weighing the padding a longer pass carries against the fixed cost of one pass more
(measured as the worker runs), within a padded-token budget and a count, as TEI's
``max-batch-tokens`` does: a pass of short queries can be large, a pass of long passages stays
small. The claim script (``claim.lua``) receives its numbers from here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from embedq.config.settings import Settings
from embedq.worker.pass_cost import PRIOR_TOKENS


@dataclass(frozen=True, slots=True)
class PassPolicy:
    """How the texts of one batch are cut into forward passes."""

    max_tokens: int  # padded tokens per pass: texts x the longest of them
    max_texts: int

    def plan(self, token_counts: list[int], *, truncate_at: int,
             overhead_tokens: float = PRIOR_TOKENS) -> list[list[int]]:
        """Indices of the texts grouped into passes, longest first, at the least cost.

        A pass costs ``overhead_tokens`` (its fixed part, `embedq.worker.pass_cost`) plus
        ``len(pass) * its longest text`` padded tokens (each capped at ``truncate_at``, the
        model's limit), within ``max_texts`` and ``max_tokens`` (a text over the budget runs
        alone). Sorted by length, an optimal cut is one of the contiguous ones, which dynamic
        programming finds in ``len x max_texts`` steps. Why not a greedy fill: a batch of 48
        short texts of 8 to 25 tokens cut into 32 + 16 pads the first pass to 25 tokens,
        half of it padding; measured on MiniLM (OpenVINO fp32, Zen 4) that cost 4.8 ms a text
        against 3.7 for a batch of 128, whose passes happened to be even.
        """
        order = sorted(range(len(token_counts)), key=lambda i: -token_counts[i])
        lengths = [min(token_counts[i], truncate_at) for i in order]  # non-increasing
        best = [0.0] + [float("inf")] * len(order)  # best[j]: the cost of the first j texts
        start = [0] * (len(order) + 1)  # where the last pass of that best cut starts
        for end in range(1, len(order) + 1):
            for first in range(end - 1, max(end - self.max_texts, 0) - 1, -1):
                padded = (end - first) * lengths[first]  # grows as ``first`` moves back
                if end - first > 1 and padded > self.max_tokens:
                    break
                cost = best[first] + overhead_tokens + padded
                if cost < best[end]:
                    best[end], start[end] = cost, first
        passes: list[list[int]] = []
        end = len(order)
        while end:
            passes.append(order[start[end]:end])
            end = start[end]
        return passes[::-1]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """What one consumer claims per batch, and how that batch is run."""

    claim_texts: int
    claim_messages: int
    linger_s: float
    max_deliveries: int
    lifo_after_s: float  # 0: always oldest first
    passes: PassPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchPolicy:
        """The policy the ``EMBEDQ_BATCH_*`` and pass settings describe."""
        return cls(claim_texts=settings.batch_texts, claim_messages=settings.batch_texts,
                   linger_s=settings.batch_interval_s, max_deliveries=settings.max_deliveries,
                   lifo_after_s=settings.lifo_after_s,
                   passes=PassPolicy(settings.max_batch_tokens, settings.max_batch_size))

    def for_model(self, max_tokens_per_pass: int | None) -> PassPolicy:
        """The pass policy of a model that sets its own token budget (or the default)."""
        if max_tokens_per_pass is None:
            return self.passes
        return replace(self.passes, max_tokens=max_tokens_per_pass)

    def linger(self, *, claimed_texts: int, flowing: bool, suspects: bool) -> bool:
        """Wait briefly for more before running a batch that came up short? Only while traffic
        flows (the last batch held several texts) and never with a poison suspect in hand."""
        return (claimed_texts < self.claim_texts and self.linger_s > 0 and flowing
                and not suspects)
