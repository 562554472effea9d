"""The request a producer enqueues and the result a worker returns, as versioned plain dicts.

Both travel as msgpack maps of primitive types (vectors as zstd-compressed bytes), so nothing on
the wire needs pickle and a producer and a worker of different releases fail with a clear
`PayloadError` instead of misreading each other.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embedq.config.errors import PayloadError
from embedq.tasks.codec import decode_vectors, encode_vectors

SCHEMA_VERSION = 1
_SHOWN_PAYLOAD_CHARS = 200


def payload_error(problem: str, payload: object) -> PayloadError:
    shown = repr(payload)
    if len(shown) > _SHOWN_PAYLOAD_CHARS:
        shown = shown[:_SHOWN_PAYLOAD_CHARS] + "…"
    error = PayloadError(f"{problem}; payload: {shown}")
    error.payload = payload  # type: ignore[attr-defined]  # kept for whoever handles it
    return error


def _check_version(payload: object, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise payload_error(f"{what} must be a map, got {type(payload).__name__}", payload)
    version = payload.get("v")
    if version != SCHEMA_VERSION:
        raise payload_error(
            f"{what} has schema version {version!r}, this embedq speaks {SCHEMA_VERSION}: "
            "upgrade the older of producer and worker",
            payload,
        )
    return payload


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """One chunk of texts for one route, resolved by the producer from the route table."""

    texts: list[str]
    route: str
    model: str
    precision: str
    dim: int
    normalize: bool
    output_dtype: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Put before every text, as sentence-transformers' encode(prompt=...) does; "" for none.
    # Optional on the wire: a message of an older producer reads as "no prompt".
    prompt: str = ""
    #: Per text, wall-clock seconds after which its caller no longer waits (None: as long as
    #: the message lives). Coalesced callers each keep their own deadline.
    deadlines: list[float] | None = None

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-ready map with the schema version."""
        wire = {"v": SCHEMA_VERSION, **asdict(self)}
        if self.deadlines is None:
            del wire["deadlines"]  # an older worker reads the same map as before
        return wire

    @classmethod
    def from_wire(cls, payload: object) -> EmbedRequest:
        """Parse and type-check a request; items are checked one by one by the worker."""
        data = _check_version(payload, "embed request")
        expected = {
            "texts": list, "route": str, "model": str, "precision": str, "dim": int,
            "normalize": bool, "output_dtype": str, "id": str,
        }
        for key, kind in expected.items():
            if not isinstance(data.get(key), kind):
                raise payload_error(
                    f"embed request field {key!r} must be {kind.__name__}, "
                    f"got {type(data.get(key)).__name__}",
                    payload,
                )
        prompt = data.get("prompt", "")
        if not isinstance(prompt, str):
            raise payload_error(f"embed request field 'prompt' must be str, got "
                                f"{type(prompt).__name__}", payload)
        deadlines = data.get("deadlines")
        if deadlines is not None and not (
                isinstance(deadlines, list) and len(deadlines) == len(data["texts"])
                and all(isinstance(d, int | float) for d in deadlines)):
            raise payload_error("embed request field 'deadlines' must be one number per text",
                                payload)
        return cls(**{key: data[key] for key in expected}, prompt=prompt,
                   deadlines=None if deadlines is None else [float(d) for d in deadlines])


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """Vectors of one request plus what a caller needs to trust them."""

    id: str
    model: str
    revision: str
    precision: str
    dim: int
    normalize: bool
    vectors: np.ndarray
    cached: list[bool]
    truncated: list[bool]
    tokens: list[int]
    errors: list[tuple[int, str]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    queue: str = ""

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-ready map; vectors become compressed bytes plus dtype and shape."""
        rows, cols = self.vectors.shape
        return {
            "v": SCHEMA_VERSION,
            "id": self.id,
            "model": self.model,
            "revision": self.revision,
            "precision": self.precision,
            "dim": self.dim,
            "normalize": self.normalize,
            "dtype": self.vectors.dtype.name,
            "shape": [rows, cols],
            "vectors": encode_vectors(self.vectors),
            "cached": self.cached,
            "truncated": self.truncated,
            "tokens": self.tokens,
            "errors": [[index, message] for index, message in self.errors],
            "timings_ms": self.timings_ms,
            "worker": self.worker,
            "queue": self.queue,
        }

    @classmethod
    def from_wire(cls, payload: object) -> EmbedResult:
        """Parse a result map; any missing or mistyped field is a `PayloadError`."""
        data = _check_version(payload, "embed result")
        try:
            rows, cols = (int(n) for n in data["shape"])
            vectors = decode_vectors(data["vectors"], str(data["dtype"]), (rows, cols))
            per_item = [list(data[k]) for k in ("cached", "truncated", "tokens")]
            if any(len(values) != rows for values in per_item):
                raise payload_error("per-item lists do not match the number of vectors", payload)
            return cls(
                id=str(data["id"]),
                model=str(data["model"]),
                revision=str(data["revision"]),
                precision=str(data["precision"]),
                dim=int(data["dim"]),
                normalize=bool(data["normalize"]),
                vectors=vectors,
                cached=[bool(v) for v in per_item[0]],
                truncated=[bool(v) for v in per_item[1]],
                tokens=[int(v) for v in per_item[2]],
                errors=[(int(i), str(m)) for i, m in data.get("errors", [])],
                timings_ms={str(k): float(v) for k, v in data.get("timings_ms", {}).items()},
                worker=str(data.get("worker", "")),
                queue=str(data.get("queue", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise payload_error(f"embed result is malformed ({exc!r})", payload) from exc
