"""How fast a consumer serves while busy, as producers should read it: at full batches.

Producers shed load by dividing the texts ahead of a request by the live consumers' published
rates (`embedq.producer.load`). A consumer's rate depends on its batch size: a pass of 5 short
texts costs nearly what a pass of 32 does, so small batches measure a rate far below the
consumer's capacity. Small batches come from short queues, and short queues come from shedding,
so a rate that small batches could pull down would feed back: a low rate sheds more, queues get
shorter, batches smaller, the rate lower, until the pool idles behind a producer that refuses
work it could serve. So a batch that filled its claim moves the rate either way (the queue held
at least that much: this is the rate the work ahead drains at), and a smaller one may only
raise it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ServiceRate:
    """An exponentially weighted rate (texts per second while busy), fed one batch at a time."""

    weight: float = 0.3  # how much one batch moves it
    value: float = 0.0  # 0: nothing measured yet

    def observe(self, texts_per_s: float, *, full: bool) -> None:
        """Take one batch's rate; ``full``: the batch held as many texts as a claim may."""
        if not self.value:
            self.value = texts_per_s
        elif full or texts_per_s > self.value:
            self.value = self.weight * texts_per_s + (1 - self.weight) * self.value
