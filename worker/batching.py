"""The batching policy, in one place: what a claim may take, how long to linger, how passes are cut.

A consumer claims everything waiting up to a budget of texts (so batches grow with load by
themselves), lingers a few milliseconds for more only while traffic is flowing (a lone request
never waits), and the embedder cuts what was claimed into forward passes by a padded-token
budget as well as by count, as TEI's ``max-batch-tokens`` does: a pass of short queries can be
large, a pass of long passages stays small, and padding waste stays low. The claim script
(``claim.lua``) receives its numbers from here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from embedq.config.settings import Settings


@dataclass(frozen=True, slots=True)
class PassPolicy:
    """How the texts of one batch are cut into forward passes."""

    max_tokens: int  # padded tokens per pass: texts x the longest of them
    max_texts: int

    def plan(self, token_counts: list[int], *, truncate_at: int) -> list[list[int]]:
        """Indices of the texts grouped into passes, longest first.

        A pass costs ``len(pass) * its longest text`` padded tokens (each capped at
        ``truncate_at``, the model's limit); a new pass starts when adding a text would pass
        the budget or the count limit.
        """
        order = sorted(range(len(token_counts)), key=lambda i: -token_counts[i])
        passes: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in order:
            length = min(token_counts[index], truncate_at)
            if current and (len(current) >= self.max_texts
                            or (len(current) + 1) * longest > self.max_tokens):
                passes.append(current)
                current = []
            if not current:
                longest = length  # sorted longest first: the first text sets the padded length
            current.append(index)
        if current:
            passes.append(current)
        return passes


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
