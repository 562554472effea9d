"""What an embed task leaves in Celery's result backend, and how to read it back.

The result is a map of plain types, so any Celery consumer decodes it without embedq:

* fields: ``v`` (schema version), ``id``, ``model``, ``revision``, ``precision``, ``dim``,
  ``normalize``, ``dtype`` (``float32``, ``float16``, ``int8`` or ``uint8`` for packed binary),
  ``shape`` (``[rows, columns]``), ``vectors``, ``cached``, ``truncated``, ``tokens`` (one per
  text), ``errors``, ``timings_ms``, ``worker``, ``queue``;
* ``vectors`` follows the serializer the task was sent with: with JSON (Celery's default) a list
  of rows of numbers; with msgpack the rows' little-endian bytes, zstd-compressed
  (``np.frombuffer(zstandard.decompress(v), dtype).reshape(shape)``).

`vectors_of` turns one result, or the list a group or chord hands on, into a numpy array.

A failure is stored as Celery stores one: ``exc_type``, ``exc_module`` and ``exc_message`` of the
embedq error, so ``AsyncResult.get()`` raises the same class from `embedq.config.errors`.
Celery rebuilds it as ``cls(*exc_message)``, so errors whose constructor takes more than a
message travel with the constructor's arguments (`rebuildable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedq.config.errors import (
    EmbeddingFailedError,
    InvalidTextError,
    PayloadError,
    UnknownUseCaseError,
)
from embedq.tasks.codec import decode_vectors
from embedq.tasks.schema import EmbedResult

JSON = "json"
MSGPACK = "msgpack"


def result_value(result: EmbedResult, serializer: str) -> dict[str, Any]:
    """The task's return value: the result's wire map, vectors as lists for JSON."""
    wire = result.to_wire()
    if serializer == JSON:
        wire["vectors"] = result.vectors.tolist()
    return wire


def vectors_of(result: Any) -> np.ndarray:
    """The vectors of an embed task's result (or of a list of them, stacked in order) as one
    numpy array of the result's dtype."""
    if isinstance(result, Sequence) and not isinstance(result, str | bytes):
        parts = [vectors_of(one) for one in result]
        if not parts:
            raise PayloadError("vectors_of() got an empty list of results")
        return np.concatenate(parts)
    if not isinstance(result, dict) or "vectors" not in result:
        raise PayloadError(f"not an embed task result: {type(result).__name__}; expected the "
                           "map embed tasks return (or a list of them)")
    rows, cols = (int(n) for n in result["shape"])
    data = result["vectors"]
    if isinstance(data, bytes):
        return decode_vectors(data, str(result["dtype"]), (rows, cols))
    array: np.ndarray = np.asarray(data, dtype=np.dtype(str(result["dtype"])))
    if array.size == 0:
        array = array.reshape(rows, cols)
    if array.shape != (rows, cols):
        raise PayloadError(f"result vectors have shape {array.shape}, the result says "
                           f"{(rows, cols)}")
    return array


def rebuildable(error: BaseException) -> BaseException:
    """``error`` with ``args`` that Celery's ``cls(*exc_message)`` turns back into it.

    Errors built from a message alone are returned as they are; the others get a copy whose
    ``args`` are their constructor's arguments (JSON-safe: string keys, no arrays).
    """
    args: tuple[Any, ...]
    if isinstance(error, UnknownUseCaseError):
        args = (error.use_case, list(error.known))
    elif isinstance(error, InvalidTextError):
        args = (error.index, error.problem)
    elif isinstance(error, EmbeddingFailedError):
        args = ({str(index): problem for index, problem in error.errors.items()}, None)
    else:
        return error
    copy = type(error).__new__(type(error), *args)
    copy.__traceback__ = error.__traceback__
    return copy
