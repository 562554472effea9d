"""embedq's error tree as OpenAI-shaped HTTP errors: one table from class to status, and the
errors only the gateway raises (branches of the tree in `embedq.config.errors`).

Every SDK reads ``{"error": {"message", "type", "param", "code"}}`` and picks its exception class
from the status alone, so the status says what the client can do: fix the request (400, 404,
413), fix the key (401), keep to the use cases the key allows (403), come back later (429, 503,
with ``Retry-After``) or wait longer (504).
An error embedq did not raise on purpose becomes a bare 500 naming the request id; its
traceback goes to the gateway's log, never to the client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson
from starlette.responses import Response

from embedq.config.errors import (
    BrokerUnavailableError,
    DeadLetteredError,
    EmbeddingFailedError,
    EmbedqError,
    EmbedTimeoutError,
    InvalidInputError,
    InvalidTextError,
    ModelUnavailableError,
    NoLiveWorkerError,
    OverloadedError,
    UnknownUseCaseError,
)

_RETRY_AFTER_S = "1"


class InvalidFieldError(InvalidInputError):
    """One field of an HTTP request is wrong; ``field`` names it as the client wrote it
    (``input[3]``, ``dimensions``, ``body``), so an OpenAI-style error can point at it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class RequestTooLargeError(InvalidFieldError):
    """An HTTP request over a gateway limit (body bytes or texts); the message names the limit."""


class ApiKeyError(EmbedqError):
    """An HTTP request without a bearer key, or with one the gateway does not accept."""


class UseCaseNotAllowedError(EmbedqError):
    """A gateway key scoped to some use cases asked for another one (`embedq.gateway.keyfile`)."""

    def __init__(self, use_case: str, allowed: list[str], fingerprint: str) -> None:
        self.use_case = use_case
        self.allowed = allowed
        self.fingerprint = fingerprint
        super().__init__(f"the API key {fingerprint} may not use {use_case!r}; it may use: "
                         f"{', '.join(allowed)} (ask for a key scoped to {use_case!r})")


class RateLimitedError(OverloadedError):
    """A gateway key sent texts faster than its rate; ``retry_after_s`` says when enough of its
    budget is back for this request."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """How one kind of error goes over HTTP."""

    status: int
    type: str
    code: str


# First match wins, so subclasses come before their bases. What the client can fix:
_REFUSED: tuple[tuple[type[BaseException], Refusal], ...] = (
    (ApiKeyError, Refusal(401, "authentication_error", "invalid_api_key")),
    (UseCaseNotAllowedError, Refusal(403, "permission_error", "use_case_not_allowed")),
    (RequestTooLargeError, Refusal(413, "invalid_request_error", "request_too_large")),
    (InvalidInputError, Refusal(400, "invalid_request_error", "invalid_input")),
    (UnknownUseCaseError, Refusal(404, "invalid_request_error", "model_not_found")),
)
# What is busy, down or too slow: the client may retry later.
_UNAVAILABLE: tuple[tuple[type[BaseException], Refusal], ...] = (
    (RateLimitedError, Refusal(429, "rate_limit_error", "rate_limit_exceeded")),
    (OverloadedError, Refusal(429, "rate_limit_error", "overloaded")),
    (NoLiveWorkerError, Refusal(503, "service_unavailable", "no_live_worker")),
    (BrokerUnavailableError, Refusal(503, "service_unavailable", "broker_unavailable")),
    (ModelUnavailableError, Refusal(503, "service_unavailable", "model_unavailable")),
)
# What failed on our side.
_FAILED: tuple[tuple[type[BaseException], Refusal], ...] = (
    (EmbedTimeoutError, Refusal(504, "timeout", "timeout")),
    (DeadLetteredError, Refusal(500, "server_error", "dead_lettered")),
    (EmbeddingFailedError, Refusal(500, "server_error", "embedding_failed")),
    (EmbedqError, Refusal(500, "server_error", "embedq_error")),
)
_TABLE = _REFUSED + _UNAVAILABLE + _FAILED
INTERNAL = Refusal(500, "server_error", "internal_error")


def refusal_of(exc: BaseException) -> Refusal:
    """The status, type and code for an error (`INTERNAL` for anything not embedq's own)."""
    return next((refusal for kind, refusal in _TABLE if isinstance(exc, kind)), INTERNAL)


def _param(exc: BaseException) -> str | None:
    if isinstance(exc, InvalidFieldError):
        return exc.field
    if isinstance(exc, InvalidTextError):
        return f"input[{exc.index}]"
    return "model" if isinstance(exc, UnknownUseCaseError | UseCaseNotAllowedError) else None


def _message(exc: BaseException, request_id: str) -> str:
    if isinstance(exc, UnknownUseCaseError):
        return (f"model {exc.use_case!r} is not an embedq use case here; known: "
                f"{', '.join(exc.known)} (GET /v1/models lists them)")
    if refusal_of(exc) is INTERNAL:
        return (f"internal error in the embedq gateway; its log has the details (request "
                f"{request_id})")
    return str(exc)


def _response(status: int, message: str, kind: str, param: str | None, code: str,
              headers: dict[str, str]) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


def error_response(exc: BaseException, request_id: str) -> Response:
    """The OpenAI-shaped error for ``exc``; never a traceback."""
    refusal = refusal_of(exc)
    headers = {"x-request-id": request_id}
    if isinstance(exc, OverloadedError):
        headers["retry-after"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif refusal.status in (429, 503):
        headers["retry-after"] = _RETRY_AFTER_S
    return _response(refusal.status, _message(exc, request_id), refusal.type, _param(exc),
                     refusal.code, headers)


def routing_error(status: int, method: str, path: str, request_id: str) -> Response:
    """An unknown path (404) or a wrong method (405), in the same shape as every other error."""
    if status == 405:
        message, code = f"{method} is not allowed on {path}", "method_not_allowed"
    else:
        message, code = (f"no such endpoint {path!r}; embedq serves POST /v1/embeddings, GET "
                         "/v1/models, GET /health and GET /metrics"), "not_found"
    return _response(status, message, "invalid_request_error", None, code,
                     {"x-request-id": request_id})
