"""The two kinds of precision a route names: of the weights, and of the vectors it returns.

Kept apart on purpose (as infinity_emb does): a model can run at int8 weights and still return
float32 vectors, or at fp32 and return packed bits. Both are plain string enums, so the wire,
the JSON files and the settings carry their values unchanged.
"""

from __future__ import annotations

from enum import StrEnum

#: The quality targets for int8 against fp32; `precision: auto` keeps to them.
INT8_MIN_MEAN_COSINE = 0.99
INT8_MAX_SPEARMAN_DROP = 0.005


class Precision(StrEnum):
    """Weight precision a worker runs its model at (not the dtype of the vectors it returns).

    ``auto`` is only ever asked for: the worker turns it into one of the others from the hardware
    and the model's measured int8 quality, and its results name the precision actually used.
    """

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    AUTO = "auto"


class OutputDtype(StrEnum):
    """Element type of the vectors handed back to the producer.

    ``int8`` maps each dimension's calibrated range onto -128..127; ``binary`` keeps one sign
    bit per dimension, packed eight to a byte (uint8 on the wire, ``ceil(dim / 8)`` columns).
    """

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    BINARY = "binary"

    @property
    def array_dtype(self) -> str:
        """The numpy dtype name of the vectors' array (binary: the bytes of packed bits)."""
        return "uint8" if self is OutputDtype.BINARY else self.value

    @property
    def quantized(self) -> bool:
        """int8 and binary: made from float vectors once, then stored and returned exactly."""
        return self in (OutputDtype.INT8, OutputDtype.BINARY)

    def width(self, dim: int) -> int:
        """Columns of a vector of ``dim`` dimensions (binary packs eight to a byte)."""
        return -(-dim // 8) if self is OutputDtype.BINARY else dim
