"""``embed`` as a first-class Celery task: ``from embedq.tasks import embed``.

A Celery user's app sends ``embed.delay(texts, use_case="search")``, ``embed.s(...)`` in a chain,
a group or a chord, like any task of theirs. The call carries only ``texts``, ``use_case`` and
``dim``: nothing in a message can name a model, a path or a class. The route table decides the
rest, twice: here, to pick the queue (``queue`` is put into the signature's options, so the
signature travels inside a chain or a chord with its destination, whichever app or worker sends
it on), and on the worker, which resolves the call against its own route table and refuses a use
case whose queue is not the one the message came from.

The task is a ``shared_task``: it binds to the user's current app, so the user's serializer,
broker and result backend apply. Its body never runs: embedq's consumers serve the embed queues;
a plain Celery worker or eager mode that tries to run it gets an error that says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from threading import Lock
from typing import Any

from celery import Task, shared_task

from embedq.config.errors import EmbedqError, InvalidInputError
from embedq.config.registry import Registry, RouteSpec, load_registry
from embedq.config.settings import load_settings
from embedq.tasks.names import EMBED_TASK, route_queue
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.validation import check_dim, check_texts
from embedq.tasks.wire import TEXTS_HEADER

_ARGUMENTS = ("texts", "use_case", "dim")


class _Routes:
    """The route table this process routes by: set with `use_routes`, else loaded on first use
    from ``EMBEDQ_CONFIG_DIR`` (or the packaged one), never at import."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._loaded: tuple[Registry, int] | None = None

    def set(self, registry: Registry | None, max_text_chars: int | None = None) -> None:
        with self._lock:
            if registry is None:
                self._loaded = None
                return
            chars = max_text_chars or load_settings().max_text_chars
            self._loaded = (registry, chars)

    def get(self) -> tuple[Registry, int]:
        with self._lock:
            if self._loaded is None:
                settings = load_settings()
                self._loaded = (load_registry(settings.config_dir), settings.max_text_chars)
            return self._loaded


_routes = _Routes()


def use_routes(registry: Registry | None, *, max_text_chars: int | None = None) -> None:
    """Route ``embed`` calls of this process by ``registry`` (None: load it again on next use)."""
    _routes.set(registry, max_text_chars)


def call_arguments(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
                   ) -> dict[str, Any]:
    """``texts``, ``use_case`` and ``dim`` of a call, positional or by name; anything else is an
    `InvalidInputError` (a message must not smuggle in a model or a path)."""
    args, kwargs = list(args or ()), dict(kwargs or {})
    if len(args) > len(_ARGUMENTS):
        raise InvalidInputError(f"embed takes at most {len(_ARGUMENTS)} arguments (texts, "
                                f"use_case, dim), got {len(args)}")
    unknown = sorted(set(kwargs) - set(_ARGUMENTS))
    if unknown:
        raise InvalidInputError(f"embed got unknown argument(s) {', '.join(unknown)}; it takes "
                                "texts, use_case and dim (the route table decides the model)")
    named = dict(zip(_ARGUMENTS, args, strict=False))
    twice = sorted(set(named) & set(kwargs))
    if twice:
        raise InvalidInputError(f"embed got {', '.join(twice)} both by position and by name")
    return {**named, **kwargs}


def _route(registry: Registry, use_case: object) -> RouteSpec:
    if use_case is not None and not isinstance(use_case, str):
        raise InvalidInputError(f"use_case must be a string, got {type(use_case).__name__}")
    return registry.route(use_case)


def resolve(registry: Registry, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
            *, task_id: str, max_text_chars: int) -> EmbedRequest:
    """The full request a short ``embed(texts, use_case, dim)`` call stands for, by the route
    table of whoever calls this (the worker's, on the worker)."""
    call = call_arguments(args, kwargs)
    if "texts" not in call:
        raise InvalidInputError("embed needs texts: embed.delay(['a text'], use_case='search')")
    route = _route(registry, call.get("use_case"))
    texts = check_texts(call["texts"], max_text_chars)
    return EmbedRequest(texts=texts, route=route.name, model=route.model,
                        precision=route.precision.value,
                        dim=check_dim(registry, route, call.get("dim")),
                        normalize=route.normalize, output_dtype=route.output_dtype.value,
                        id=task_id)


class EmbedTask(Task):  # type: ignore[misc]  # Celery's Task is untyped
    """Routes by use case and checks the texts before anything is sent."""

    name = EMBED_TASK

    def signature(self, args: Any = None, *starargs: Any, **starkwargs: Any) -> Any:
        """A signature that carries its queue, so whoever sends it on (a worker running a chain,
        a chord's last part) sends it where its use case is served."""
        sig = super().signature(args, *starargs, **starkwargs)
        registry, _ = _routes.get()
        call = call_arguments(sig.args, sig.kwargs)
        route = _route(registry, call.get("use_case"))
        sig.options.setdefault("queue", route_queue(route))
        return sig

    subtask = signature

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None,
                    producer: Any = None, link: Any = None, link_error: Any = None,
                    shadow: str | None = None, **options: Any) -> Any:
        """Check the call and route it by use case, then send it as Celery would."""
        if options.get("eta") is not None or options.get("countdown") is not None:
            raise InvalidInputError(
                "embed tasks take no eta or countdown: embed workers compute what is waiting "
                "at once and hold nothing for later; send the task when it is due")
        registry, max_chars = _routes.get()
        call = call_arguments(args, kwargs)
        route = _route(registry, call.get("use_case"))
        check_dim(registry, route, call.get("dim"))
        if "texts" in call:
            count = len(check_texts(call["texts"], max_chars))
            options["headers"] = {**(options.get("headers") or {}), TEXTS_HEADER: count}
        options.setdefault("queue", route_queue(route))
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow,
                                   **options)


def _served_elsewhere(texts: list[str], use_case: str | None = None, dim: int | None = None
                      ) -> Any:
    """The body, which never runs on an embedq worker; elsewhere it says where embed tasks go."""
    raise EmbedqError(
        f"{EMBED_TASK} ran inside a plain Celery worker or in eager mode; embed tasks are "
        "served by embedq workers (embedq worker -m MODEL -p PRECISION), which must be the "
        "only consumers of the embed.* queues")


embed: Any = shared_task(base=EmbedTask, name=EMBED_TASK)(_served_elsewhere)
"""The task: ``embed.delay(texts, use_case=None, dim=None)``, ``embed.s(...)``, ``.si(...)``."""

