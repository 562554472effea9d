"""What a forward pass costs, learnt from the passes run: a fixed part and a part per padded
token, so the pass planner can weigh padding against one pass more.

A pass over ``n`` texts padded to ``L`` tokens takes about ``fixed + per_token * n * L``
seconds. Measured on a 2-vCPU AMD EPYC (Zen 4) with MiniLM's OpenVINO fp32 graph on one thread,
texts of 10 to 30 tokens, 1 to 64 per pass: ``fixed`` 1.6 ms, ``per_token`` 0.22 ms, so the
fixed part weighs as much as 7 padded tokens (the fit below, over mixed batches and with
tokenising inside the pass, came to 12-18 there). The ratio depends on the backend, the model and
the CPU (a faster core shrinks the part per token, not the interpreter's part per call), so it
is fitted here, by least squares over the recent passes, never assumed; until the passes seen
differ enough in size to tell the two parts apart, `PRIOR_TOKENS` stands in.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIOR_TOKENS = 8.0  # the figure above, rounded: used until the fit has enough spread
DECAY = 0.98  # each pass weighs 2 % less after every later one: the fit follows the CPU's load
_MIN_WEIGHT = 8.0  # passes (decayed) before the fit is trusted
_MIN_SPREAD = 0.25  # the padded sizes' coefficient of variation the fit needs
_LIMITS = (1.0, 256.0)  # overhead in tokens: a fit outside is noise, not a backend


@dataclass(slots=True)
class PassCost:
    """An online fit of seconds per pass against padded tokens per pass (decayed sums)."""

    _w: float = 0.0
    _x: float = 0.0
    _y: float = 0.0
    _xx: float = 0.0
    _xy: float = 0.0

    def observe(self, padded_tokens: int, seconds: float) -> None:
        """One pass ran: ``padded_tokens`` (texts x the longest) in ``seconds``."""
        x, y = float(padded_tokens), seconds
        self._w = self._w * DECAY + 1.0
        self._x = self._x * DECAY + x
        self._y = self._y * DECAY + y
        self._xx = self._xx * DECAY + x * x
        self._xy = self._xy * DECAY + x * y

    def _fit(self) -> tuple[float, float] | None:
        """(fixed seconds, seconds per padded token), or None while the passes cannot tell."""
        if self._w < _MIN_WEIGHT:
            return None
        mean_x, mean_y = self._x / self._w, self._y / self._w
        var_x = self._xx / self._w - mean_x * mean_x
        if mean_x <= 0 or var_x < (_MIN_SPREAD * mean_x) ** 2:
            return None
        per_token = (self._xy / self._w - mean_x * mean_y) / var_x
        if per_token <= 0:
            return None
        return mean_y - per_token * mean_x, per_token

    @property
    def overhead_tokens(self) -> float:
        """The fixed part of a pass in padded tokens: what one pass more must save to pay."""
        fit = self._fit()
        if fit is None:
            return PRIOR_TOKENS
        fixed, per_token = fit
        return min(max(fixed / per_token, _LIMITS[0]), _LIMITS[1])

    def seconds(self, padded_tokens: int) -> float:
        """What a pass of ``padded_tokens`` should take (0 before any pass was seen)."""
        if self._w == 0:
            return 0.0
        fit = self._fit()
        if fit is None:  # the passes' mean time per token, with the prior's fixed part
            mean_x, mean_y = self._x / self._w, self._y / self._w
            per_token = mean_y / (mean_x + PRIOR_TOKENS) if mean_x > 0 else 0.0
            return per_token * (padded_tokens + PRIOR_TOKENS)
        fixed, per_token = fit
        return max(0.0, fixed + per_token * padded_tokens)
