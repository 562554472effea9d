"""The gateway's ASGI app: ``POST /v1/embeddings`` and friends over one shared producer client.

A producer over HTTP: each request is checked, routed by its ``model`` (a use case), refused
at once (429) when its route cannot answer it before its deadline, and awaited with the asyncio
client, so concurrent requests coalesce into few messages like any other producer's; a client
that disconnects cancels its texts. The app holds no state a second process
would need, so several gateway processes against one Redis scale like web workers.

Every answer that is not a 200 is an OpenAI-shaped error (`embedq.gateway.errors`), logged once
with the request id the client sees in ``x-request-id``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from embedq.config.errors import InvalidInputError
from embedq.config.registry import Registry, RouteSpec, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.gateway.auth import KeyCheck
from embedq.gateway.errors import (
    INTERNAL,
    InvalidFieldError,
    RequestTooLargeError,
    error_response,
    refusal_of,
    routing_error,
)
from embedq.gateway.metrics import GatewayMetrics
from embedq.gateway.protocol import check_prompt, parse_request, response_body
from embedq.gateway.refusals import RefusalSampler
from embedq.producer import EmbeddingClient, Embeddings
from embedq.producer.inputs import check_dim
from embedq.tasks.vectors import to_float32

log = structlog.get_logger("embedq.gateway")
_JSON = "application/json"
_CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection first"
# The read timeout the OpenAI SDKs (Python, Node) send with every request: how long the caller
# will wait, so the deadline its texts carry to the workers.
CLIENT_TIMEOUT_HEADER = "x-stainless-read-timeout"


@dataclass(slots=True)
class Exchange:
    """What the log line and the metrics say about one request."""

    request_id: str
    use_case: str | None = None
    texts: int = 0


Handler = Callable[[Request, Exchange], Awaitable[Response]]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # a chunked upload states no length: count as it comes
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> RequestTooLargeError:
    return RequestTooLargeError("body", f"the request body has {size:,} bytes or more, over the "
                                f"limit of {limit:,} (EMBEDQ_GATEWAY_MAX_BODY_BYTES); send fewer "
                                "or shorter texts per request")


def _json(document: object) -> Response:
    return Response(orjson.dumps(document), media_type=_JSON)


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body is read, so only a disconnect is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _ClientWatch:
    """Cancels the request's task if its client disconnects while the task waits."""

    __slots__ = ("_task", "_waiting", "handler")

    def __init__(self, request: Request) -> None:
        handler = asyncio.current_task()
        assert handler is not None  # an ASGI app runs in a task
        self.handler = handler
        self._waiting = True
        self._task = asyncio.ensure_future(_disconnected(request))
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[None]) -> None:
        if task.cancelled():
            return
        task.exception()  # read: a failed receive means the client is gone too, not a log line
        if self._waiting:  # not once the answer is on its way
            self.handler.cancel()

    def left(self) -> bool:
        """Did the client disconnect?"""
        return self._task.done() and not self._task.cancelled()

    def stop(self) -> None:
        """The wait is over: stop watching."""
        self._waiting = False
        self._task.cancel()


class Gateway:
    """The endpoints, over one producer client, one key check and one set of metrics."""

    def __init__(self, settings: Settings, registry: Registry, keys: KeyCheck,
                 client: EmbeddingClient | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.keys = keys
        self.client = client or EmbeddingClient(
            settings.model_copy(update={"shed_headroom": settings.gateway_shed_headroom}),
            registry)
        self.metrics = GatewayMetrics()
        self._log_successes = logging.getLogger("embedq.gateway").isEnabledFor(logging.DEBUG)
        self._refusals = RefusalSampler()
        # Request ids: this process's random prefix and a counter. Unique and cheap; reading
        # the OS's random source for each request cost a system call on the hot path.
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count()

    def request_id(self) -> str:
        """A new request id (16 hex digits, unique among this process's requests)."""
        return f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}"

    def deadline_s(self, request: Request) -> float:
        """The request's time: ``EMBEDQ_GATEWAY_TIMEOUT_S``, or less when the client says it
        will wait less (`CLIENT_TIMEOUT_HEADER`): work it will not wait for is neither queued
        nor computed. A header that is not a positive number is ignored, as the SDK's own."""
        limit = self.settings.gateway_timeout_s
        stated = request.headers.get(CLIENT_TIMEOUT_HEADER)
        if stated is None:
            return limit
        try:
            wait = float(stated)
        except ValueError:
            return limit
        return min(wait, limit) if 0 < wait < float("inf") else limit

    async def embed(self, request: Request, texts: list[str], use_case: str, dim: int,
                    prompt_name: str | None = None, prompt: str | None = None
                    ) -> Embeddings | None:
        """The one call into the producer; None when the client disconnected first (its
        texts are then cancelled: no worker computes them). A request the route cannot answer
        before its deadline is refused at once by the producer (429, ``Retry-After``)."""
        submitted = self.client.submit(texts, use_case, dim=dim,  # refusals raise here, at once
                                       timeout=self.deadline_s(request),
                                       prompt_name=prompt_name, prompt=prompt)
        # Awaited in this task, with one watcher task that cancels it if the client leaves
        # (`awaited` then cancels the texts): a second task and `asyncio.wait` cost CPU on
        # every request, which under a spike is taken from the workers.
        watch = _ClientWatch(request)
        try:
            return await self.client.awaited(submitted)
        except asyncio.CancelledError:
            if watch.left():  # the watcher's cancel, not the server's
                watch.handler.uncancel()
                return None
            raise
        finally:
            watch.stop()

    def endpoint(self, handler: Handler, *, metered: bool = False
                 ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` with errors turned into OpenAI-shaped answers, logged and counted."""

        async def answer(request: Request) -> Response:
            exchange = Exchange(request_id=self.request_id())
            started = time.perf_counter()
            self.metrics.in_progress.inc()
            try:
                response = await handler(request, exchange)
            except Exception as exc:  # every failure becomes an answer; nothing escapes
                response = error_response(exc, exchange.request_id)
                self._log_refusal(request, exchange, exc, response.status_code, started)
            else:
                response.headers["x-request-id"] = exchange.request_id
                if self._log_successes:
                    log.debug("request", **self._fields(request, exchange, 200, started))
            finally:
                self.metrics.in_progress.dec()
            if metered:
                self.metrics.observe(exchange.use_case, response.status_code, exchange.texts,
                                     time.perf_counter() - started)
            return response

        return answer

    @staticmethod
    def _fields(request: Request, exchange: Exchange, status: int, started: float
                ) -> dict[str, object]:
        return {"request_id": exchange.request_id, "method": request.method,
                "path": request.scope["path"], "status": status, "use_case": exchange.use_case,
                "texts": exchange.texts, "ms": round((time.perf_counter() - started) * 1000, 2)}

    def _log_refusal(self, request: Request, exchange: Exchange, exc: Exception, status: int,
                     started: float) -> None:
        refusal = refusal_of(exc)
        if refusal is INTERNAL:
            log.error("request failed", **self._fields(request, exchange, status, started),
                      exc_info=exc)
            return
        refused = 0
        if status in (429, 503):  # come back later: a spike's worth are one line a second
            refused = self._refusals.take(exchange.use_case, refusal.code)
            if not refused:
                return  # counted only: nothing of the line is built
        fields = self._fields(request, exchange, status, started)
        if refused:
            fields["refused"] = refused
        if status >= 500:
            log.warning("request failed", **fields, error=str(exc))
        else:
            log.info("request refused", **fields, error=str(exc))

    # -- endpoints ------------------------------------------------------------------------

    async def embeddings(self, request: Request, exchange: Exchange) -> Response:
        """``POST /v1/embeddings``."""
        grant = self.keys.check(request.headers.get("authorization"))
        body = await read_body(request, self.settings.gateway_max_body_bytes)
        parsed = parse_request(body, max_inputs=self.settings.gateway_max_inputs,
                               max_chars=self.settings.max_text_chars)
        route = self.registry.route(parsed.use_case)
        exchange.use_case, exchange.texts = route.name, len(parsed.texts)
        grant.admit(route.name, len(parsed.texts))  # issue 24: the key's use cases and rate
        dim = self._dim(route, parsed.dimensions)
        check_prompt(self.registry, route, parsed)  # issue 22: prompts per route
        result = await self.embed(request, parsed.texts, route.name, dim, parsed.prompt_name,
                                  parsed.prompt)
        if result is None:
            return Response(status_code=_CLIENT_CLOSED)
        vectors = to_float32(result.vectors, route.output_dtype.value, dim)
        return Response(response_body(parsed, vectors, result.tokens), media_type=_JSON)

    def _dim(self, route: RouteSpec, dimensions: int | None) -> int:
        try:
            return check_dim(self.registry, route, dimensions)
        except InvalidInputError as exc:
            raise InvalidFieldError("dimensions", f"dimensions: {exc}") from None

    def _card(self, route: RouteSpec) -> dict[str, object]:
        return {"id": route.name, "object": "model", "created": 0, "owned_by": "embedq",
                "embedq": {"model": route.model, "precision": route.precision.value,
                           "dim": self.registry.output_dim(route),
                           "output_dtype": route.output_dtype.value,
                           "description": route.description}}

    async def models(self, request: Request, exchange: Exchange) -> Response:
        """``GET /v1/models``: the use cases, which are the models a client may name."""
        self.keys.check(request.headers.get("authorization"))
        return _json({"object": "list",
                      "data": [self._card(route) for route in self.registry.routes.values()]})

    async def model(self, request: Request, exchange: Exchange) -> Response:
        """``GET /v1/models/{model}``."""
        self.keys.check(request.headers.get("authorization"))
        return _json(self._card(self.registry.route(request.path_params["model"])))

    async def health(self, request: Request, exchange: Exchange) -> Response:
        """``GET /health``: 200 while the broker answers, with each route's queue figures."""
        statuses = await asyncio.to_thread(
            lambda: [self.client.route_status(name) for name in self.registry.routes])
        return _json({"status": "ok", "routes": {
            status.use_case: {"model": status.model, "queue": status.queue.queue,
                              "depth": status.queue.depth, "consumers": status.queue.consumers,
                              "dead_letters": status.queue.dead_letters}
            for status in statuses}})

    async def prometheus(self, request: Request, exchange: Exchange) -> Response:
        """``GET /metrics`` in Prometheus' text format."""
        return Response(self.metrics.render(), media_type=self.metrics.content_type)


class GatewayApp:
    """The gateway's ASGI app: ``POST /v1/embeddings`` straight to its endpoint, everything
    else (other paths, the lifespan) through a Starlette app.

    Why: under a spike the gateway's own CPU per request decides how fast it answers and how
    fast it refuses, and nearly every request is this one. Starlette's router and its two error
    middlewares (which have nothing to do here: the endpoint turns every error into an answer
    itself) took about a tenth of the gateway's CPU in a profile of a spike. Mounted under a
    prefix, the request takes the router's way, with the same answer.
    """

    def __init__(self, routed: Starlette,
                 embeddings: Callable[[Request], Awaitable[Response]]) -> None:
        self.routed = routed
        self._embeddings = embeddings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["path"] == "/v1/embeddings"
                and scope["method"] == "POST"):
            response = await self._embeddings(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self.routed(scope, receive, send)


def create_app(settings: Settings | None = None, registry: Registry | None = None, *,
               host: str = "127.0.0.1", client: EmbeddingClient | None = None) -> GatewayApp:
    """The gateway app for a server bound to ``host`` (keys are required beyond loopback)."""
    settings = settings or load_settings()
    registry = registry or load_registry(settings.config_dir)
    gateway = Gateway(settings, registry, KeyCheck.for_host(settings, host), client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(gateway.client.close)

    async def unrouted(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return routing_error(status, request.method, request.scope["path"],
                             gateway.request_id())

    embeddings = gateway.endpoint(gateway.embeddings, metered=True)
    routes = [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", gateway.endpoint(gateway.models), methods=["GET"]),
        Route("/v1/models/{model:path}", gateway.endpoint(gateway.model), methods=["GET"]),
        Route("/health", gateway.endpoint(gateway.health), methods=["GET"]),
        Route("/metrics", gateway.endpoint(gateway.prometheus), methods=["GET"]),
    ]
    return GatewayApp(Starlette(routes=routes, lifespan=lifespan,
                                exception_handlers={404: unrouted, 405: unrouted}), embeddings)
