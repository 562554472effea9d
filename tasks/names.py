"""Every name two parts of embedq must agree on: tasks, queues and Redis keys.

A producer and a worker meet only through these strings, so they live in one module and
nowhere else. Cache keys carry everything that makes two vectors comparable (model, revision,
precision, dimension, normalisation, dtype, truncation), so vectors of different spaces can never
be mixed, and the model name stays readable so one model's entries can be dropped alone.
"""

from __future__ import annotations

import re

import xxhash

from embedq.config.registry import RouteSpec

EMBED_TASK = "embedq.embed"
QUEUE_PREFIX = "embed"
KEY_PREFIX = "embedq:v1"
CACHE_NAMESPACE = f"{KEY_PREFIX}:vec"
MODEL_INFO_NAMESPACE = f"{KEY_PREFIX}:model"
CACHE_STATS_NAMESPACE = f"{KEY_PREFIX}:cachestats"
LIVE_NAMESPACE = f"{KEY_PREFIX}:live"
INFLIGHT_NAMESPACE = f"{KEY_PREFIX}:inflight"
DELIVERIES_NAMESPACE = f"{KEY_PREFIX}:deliveries"
DEAD_NAMESPACE = f"{KEY_PREFIX}:dead"
REPLY_NAMESPACE = f"{KEY_PREFIX}:reply"
BACKLOG_NAMESPACE = f"{KEY_PREFIX}:backlog"
RATE_NAMESPACE = f"{KEY_PREFIX}:rate"
CANCEL_NAMESPACE = f"{KEY_PREFIX}:cancel"
# kombu's Redis transport keeps a queue's priority levels in sibling lists named
# "<queue>\x06\x16<priority>" (0, the plain name, is served first); Celery's worker, Flower and
# `celery inspect` all know them. Bulk work travels at priority 9, so interactive work goes first.
PRIORITY_SEPARATOR = "\x06\x16"
BULK_PRIORITY = 9
# Celery's event exchange, as kombu's Redis transport publishes it: "/<db>.celeryev/<type>".
EVENT_EXCHANGE = "celeryev"
# Where workers say their /metrics listen, and the latest `embedq eval` results (newest first).
METRICS_ENDPOINTS_KEY = f"{KEY_PREFIX}:metrics:endpoints"
EVAL_RESULTS_KEY = f"{KEY_PREFIX}:eval:results"
_HEX = "[0-9a-f]"
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def queue_name(model: str, precision: str) -> str:
    """The queue of one model at one precision: ``embed.<model>.<precision>``."""
    return f"{QUEUE_PREFIX}.{model}.{precision}"


def route_queue(route: RouteSpec) -> str:
    """The queue a route's jobs go to: its own ``queue`` or the model's default queue."""
    return route.queue or queue_name(route.model, route.precision.value)


def parse_queue(name: str) -> tuple[str, str] | None:
    """``(model, precision)`` for a default-named queue, None for any other queue."""
    prefix, _, rest = name.partition(".")
    model, _, precision = rest.rpartition(".")
    if prefix != QUEUE_PREFIX or not model or not precision:
        return None
    return model, precision


def vector_space(
    *,
    model: str,
    revision: str,
    precision: str,
    dim: int,
    normalize: bool,
    output_dtype: str,
    max_tokens: int,
    prompt: str = "",
) -> str:
    """A short, stable id of everything that decides what a text's vector looks like."""
    parts = f"{model}|{revision}|{precision}|{dim}|{int(normalize)}|{output_dtype}|{max_tokens}"
    parts += f"|prompt:{prompt}" if prompt else ""  # no prompt: the keys of before prompts
    return xxhash.xxh3_64_hexdigest(parts.encode())


def text_digest(text: str) -> str:
    """A 128-bit hash of the exact text (xxh3: fast, and collisions are not a concern here)."""
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def cache_key(model: str, space: str, text: str) -> str:
    """The Redis key of one text's vector in one vector space."""
    return f"{CACHE_NAMESPACE}:{model}:{space}:{text_digest(text)}"


def cache_pattern(model: str | None = None) -> str:
    """A SCAN pattern for all cached vectors, or exactly those of one model.

    The per-model pattern spells out the hex space id and text hash and escapes glob characters,
    so clearing model ``a`` can never match the keys of a model named ``a:b`` or ``a*``.
    """
    if model is None:
        return f"{CACHE_NAMESPACE}:*"
    literal = _GLOB_SPECIAL.sub(r"\\\1", model)
    return f"{CACHE_NAMESPACE}:{literal}:{_HEX * 16}:{_HEX * 32}"


def model_info_key(model: str, precision: str) -> str:
    """Where a worker publishes the revision and token limit its cache keys are built with.

    Only a worker knows the revision (it comes from the installed weights), and a producer needs
    it to compute the same cache keys for its read-through lookup.
    """
    return f"{MODEL_INFO_NAMESPACE}:{model}:{precision}"


def cache_stats_key(worker: str) -> str:
    """Where one worker process publishes its cache counters for ``embedq cache stats``."""
    return f"{CACHE_STATS_NAMESPACE}:{worker}"


def cache_stats_pattern() -> str:
    """A SCAN pattern for every worker process's published cache counters."""
    return f"{CACHE_STATS_NAMESPACE}:*"


def live_key(queue: str) -> str:
    """The sorted set of workers consuming ``queue``, scored by when each entry expires."""
    return f"{LIVE_NAMESPACE}:{queue}"


def bulk_queue(queue: str) -> str:
    """The list of ``queue``'s bulk messages (kombu's name for its priority-9 level)."""
    return f"{queue}{PRIORITY_SEPARATOR}{BULK_PRIORITY}"


def backlog_key(queue: str) -> str:
    """Texts waiting in ``queue``'s interactive list: producers add, claims subtract."""
    return f"{BACKLOG_NAMESPACE}:{queue}"


def rate_key(queue: str) -> str:
    """Hash of each live consumer of ``queue`` -> the texts per second it serves while busy."""
    return f"{RATE_NAMESPACE}:{queue}"


def cancel_key(queue: str) -> str:
    """Hash of message id -> the rows of it whose callers cancelled (empty: every row)."""
    return f"{CANCEL_NAMESPACE}:{queue}"


def inflight_key(queue: str, consumer: str) -> str:
    """The list a consumer moves the messages it is working on into (see `worker.consumer`)."""
    return f"{INFLIGHT_NAMESPACE}:{queue}:{consumer}"


def deliveries_key(queue: str) -> str:
    """Hash of how often each claimed, not yet acknowledged message of ``queue`` was delivered."""
    return f"{DELIVERIES_NAMESPACE}:{queue}"


def dead_key(queue: str) -> str:
    """The dead-letter list of ``queue``: messages that could not be served, with the reason."""
    return f"{DEAD_NAMESPACE}:{queue}"


def reply_key(producer: str) -> str:
    """The list one producer process reads its replies from."""
    return f"{REPLY_NAMESPACE}:{producer}"


def event_channel(db: int, event_type: str) -> str:
    """The pub/sub channel of a Celery event: ``task-sent`` -> ``/0.celeryev/task.sent``."""
    return f"/{db}.{EVENT_EXCHANGE}/{event_type.replace('-', '.')}"
