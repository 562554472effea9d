"""The OpenAI embeddings wire format: a request body parsed strictly, a response body built fast.

Every refusal is an `InvalidFieldError` naming the field as the client wrote it (``input[3]``),
raised before anything is enqueued, with the rule the producer applies to each text. Token-id
inputs, which OpenAI accepts, are refused with the fix: embedq's workers tokenize for their own
model, so ids from another tokenizer would mean nothing. Vectors leave as float32 whatever the
route's output dtype (`embedq.tasks.vectors.to_float32`), because that is what every OpenAI SDK
decodes; ``base64`` is the little-endian float32 bytes of each vector, as OpenAI sends them.

Two extension fields pick a prompt (`embedq.config.prompts`), as TEI's ``prompt_name`` does:
``prompt_name``, one of the names the route offers, and ``prompt``, text, which only a route with
``allow_prompt_text`` takes: a client cannot steer a shared route's vectors otherwise.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import orjson

from embedq.config.errors import InvalidInputError
from embedq.config.prompts import resolve_prompt
from embedq.config.registry import Registry, RouteSpec
from embedq.gateway.errors import InvalidFieldError, RequestTooLargeError
from embedq.tasks.validation import text_problem

FIELDS = ("input", "model", "encoding_format", "dimensions", "user", "prompt_name", "prompt")
ENCODINGS = ("float", "base64")
_TOKEN_IDS_FIX = (
    "embedq takes text and tokenizes it for the route's model: send the strings themselves "
    "(LangChain's OpenAIEmbeddings: pass check_embedding_ctx_length=False)")


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    """A checked ``POST /v1/embeddings`` body."""

    texts: list[str]
    use_case: str
    encoding_format: str
    dimensions: int | None
    prompt_name: str | None = None
    prompt: str | None = None


def json_kind(value: object) -> str:
    """The JSON name of a decoded value's type, for messages a client of any language reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def decode_body(body: bytes) -> dict[str, object]:
    """The body as a JSON object, or an error saying what is wrong with the bytes."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFieldError("body", f"the request body is not valid UTF-8 (byte "
                                f"0x{body[exc.start]:02x} at offset {exc.start}); send JSON "
                                "encoded as UTF-8") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFieldError("body", f"the request body is not valid JSON ({exc.msg} at "
                                f"line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(payload, dict):
        raise InvalidFieldError("body", "the request body must be a JSON object such as "
                                '{"input": "some text", "model": "search"}, got '
                                f"{json_kind(payload)}")
    return payload


def parse_request(body: bytes, *, max_inputs: int, max_chars: int) -> EmbeddingsRequest:
    """Check a body field by field, in the order a client would fix them."""
    payload = decode_body(body)
    unknown = [name for name in payload if name not in FIELDS]
    if unknown:
        raise InvalidFieldError(unknown[0], f"unknown field {unknown[0]!r}; /v1/embeddings "
                                f"reads {', '.join(FIELDS)}")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidFieldError("model", "model must be the name of an embedq use case "
                                f"(GET /v1/models lists them), got {json_kind(model)}")
    encoding = payload.get("encoding_format")
    encoding = "float" if encoding is None else encoding
    if encoding not in ENCODINGS:
        raise InvalidFieldError("encoding_format", f"encoding_format must be 'float' or "
                                f"'base64', got {encoding!r}")
    dimensions = payload.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                                   or dimensions < 1):
        raise InvalidFieldError("dimensions", "dimensions must be a positive whole number, got "
                                f"{dimensions!r}")
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidFieldError("user", f"user must be a string, got {json_kind(user)}")
    prompts: list[str | None] = []
    for name in ("prompt_name", "prompt"):
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidFieldError(name, f"{name} must be a string, got {json_kind(value)}")
        prompts.append(value)
    texts = _texts(payload.get("input"), max_inputs, max_chars)
    return EmbeddingsRequest(texts, model, str(encoding), dimensions, *prompts)


def check_prompt(registry: Registry, route: RouteSpec, request: EmbeddingsRequest) -> None:
    """Refuse, naming the field, a prompt the route does not offer (before anything queues)."""
    try:
        resolve_prompt(route, registry.model(route.model), prompt_name=request.prompt_name,
                       prompt=request.prompt)
    except InvalidInputError as exc:
        field = "prompt" if request.prompt is not None else "prompt_name"
        raise InvalidFieldError(field, f"{field}: {exc}") from None


def _is_token_ids(items: list[object]) -> bool:
    def ids(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    return all(ids(item) or (isinstance(item, list) and item and all(map(ids, item)))
               for item in items)


def _texts(raw: object, max_inputs: int, max_chars: int) -> list[str]:
    if isinstance(raw, str):
        items: list[object] = [raw]
        names = ["input"]
    elif isinstance(raw, list):
        if not raw:
            raise InvalidFieldError("input", "input is an empty list; send at least one text")
        if _is_token_ids(raw):
            raise InvalidFieldError("input", f"input holds token ids; {_TOKEN_IDS_FIX}")
        if len(raw) > max_inputs:
            raise RequestTooLargeError("input", f"input holds {len(raw):,} texts, more than the "
                                       f"limit of {max_inputs:,} (EMBEDQ_GATEWAY_MAX_INPUTS); "
                                       "split them over several requests")
        items, names = raw, [f"input[{i}]" for i in range(len(raw))]
    else:
        raise InvalidFieldError("input", "input must be a string or a list of strings, got "
                                f"{json_kind(raw)}")
    for name, item in zip(names, items, strict=True):
        if not isinstance(item, str):
            raise InvalidFieldError(name, f"{name} is {json_kind(item)}, not a string")
        problem = text_problem(item, max_chars)
        if problem:
            raise InvalidFieldError(name, f"{name} {problem}")
    return items  # type: ignore[return-value]  # every item was just checked to be a str


def response_body(request: EmbeddingsRequest, vectors: np.ndarray, tokens: list[int]) -> bytes:
    """The ``list`` object OpenAI returns, encoded; ``vectors`` are float32 rows in input order."""
    rows: list[object]
    if request.encoding_format == "base64":
        rows = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
    else:
        rows = list(vectors)  # orjson writes numpy rows directly, in float32's shortest form
    total = sum(tokens)
    return orjson.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row}
                 for i, row in enumerate(rows)],
        "model": request.use_case,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }, option=orjson.OPT_SERIALIZE_NUMPY)
