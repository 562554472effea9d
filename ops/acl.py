"""Redis ACL users for each embedq role, built from the route table: least privilege per process.

Every process connects as its role's user (``rediss://<user>:<password>@host/0`` in its own
``EMBEDQ_REDIS_URL``) and can touch only the keys, channels and commands its part of the data
path needs:

* ``embedq-producer-<id>`` (web apps, the gateway): push to the queues of its use cases, both
  lists (write only: it cannot pop or read them but by position), add to their backlog
  counters, read their serving rates, leave cancellation marks, read and delete its own reply
  lists (``EMBEDQ_PRODUCER_ID=<id>``), read the cache and the models' info of its routes, read
  the queue gauges, publish ``task-*`` events;
* ``embedq-worker-<queue>``: everything on its one queue and that queue's in-flight,
  deliveries, dead-letter, liveness, backlog, rate and cancellation keys, write (never read)
  any producer's reply list, its
  model's cache, model info and cache counters, the Celery result backend and the keys and
  channels a Celery worker itself uses (kombu bindings, pidbox, events, unacked);
* ``embedq-dashboard``: read-only gauges (queue depth and oldest entry, liveness, deliveries,
  dead-letter counts, worker metrics endpoints, eval results);
* ``embedq-flower``: the dashboard's reads plus what Celery's remote control and event capture
  write (kombu bindings, pidbox reply lists, pidbox and event channels);
* ``embedq-dead-letters``: list, replay and purge dead letters of every queue.

No role gets ``@dangerous`` commands (``FLUSHALL``, ``KEYS``, ``CONFIG``, ``DEBUG``, ...) or
another role's keys. Passwords go to Redis as SHA-256 digests (``#<hex>``): the printed rules
never hold a password.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from embedq.config.registry import Registry
from embedq.tasks.names import (
    CACHE_STATS_NAMESPACE,
    EVAL_RESULTS_KEY,
    METRICS_ENDPOINTS_KEY,
    backlog_key,
    bulk_queue,
    cache_pattern,
    cancel_key,
    dead_key,
    deliveries_key,
    event_channel,
    inflight_key,
    live_key,
    model_info_key,
    rate_key,
    reply_key,
    route_queue,
)
from embedq.tasks.producer_id import reply_pattern

_GLOB = re.compile(r"([*?\[\]\\])")
_BASE = ["reset", "on", "-@all", "+@connection", "-@dangerous", "+select", "+ping", "+time"]
# Celery's own Redis keys and channels (kombu's transport and the result backend).
_KOMBU_KEYS = ["~_kombu.binding*", "~*.celery.pidbox*", "~unacked", "~unacked_index",
               "~unacked_mutex", "~celery-task-meta-*", "~celery-taskset-meta-*",
               "~chord-unlock-*"]
# A Celery worker runs kombu's Lua and many list, set and hash commands on its own keys: the
# key patterns, not the command list, keep it there; what could reach beyond them is removed.
_WORKER_COMMANDS = ["+@read", "+@write", "+@list", "+@hash", "+@sortedset", "+@set",
                    "+@string", "+@pubsub", "+@transaction", "+@scripting", "+@keyspace",
                    "-@dangerous", "-@admin", "-function", "-script|flush", "-script|kill",
                    "-flushall", "-flushdb", "-keys", "-rename", "-renamenx",
                    "-move", "-copy", "-migrate", "-restore", "-object"]


def literal(name: str) -> str:
    """``name`` as an ACL glob that matches it: glob characters escaped, and each unprintable
    character (kombu's priority separator ``\\x06\\x16``) as ``?``, so that every rule can be
    printed, pasted into redis-cli and written to an ACL file."""
    return "".join(c if c.isprintable() else "?" for c in _GLOB.sub(r"\\\1", name))


@dataclass(frozen=True, slots=True)
class Served:
    """One queue and what is served on it."""

    queue: str
    model: str
    precision: str


def served_queues(registry: Registry, use_cases: list[str] | None = None) -> list[Served]:
    """Each queue the routes (or the named use cases) send to, fallback models included."""
    found: dict[str, Served] = {}
    names = use_cases if use_cases is not None else list(registry.routes)
    for name in names:
        route = registry.route(name)
        for model in route.chain:
            served = route.served_by(model)
            queue = route_queue(served)
            found.setdefault(queue, Served(queue, served.model, served.precision.value))
    return list(found.values())


@dataclass(frozen=True, slots=True)
class AclUser:
    """One Redis user: its name and ``ACL SETUSER`` rules (without the password)."""

    name: str
    role: str
    rules: tuple[str, ...]

    def setuser(self, password: str | None) -> list[str]:
        """The full ``ACL SETUSER`` arguments, with the password as its SHA-256 digest."""
        secret = f"#{hashlib.sha256(password.encode()).hexdigest()}" if password else "resetpass"
        return [self.name, *self.rules, secret]

    def line(self, password: str | None) -> str:
        """One ``ACL SETUSER`` line for redis-cli or an ACL file."""
        return "ACL SETUSER " + " ".join(self.setuser(password))


def _lists(served: Served) -> list[str]:
    """The two lists of a queue: interactive, and bulk (kombu's priority-9 list)."""
    return [literal(served.queue), literal(bulk_queue(served.queue))]


def _gauges(queues: list[Served]) -> list[str]:
    """Read-only access to the gauges of ``queues`` (what `queue_stats` reads)."""
    keys = []
    for served in queues:
        q = served.queue
        keys += [*_lists(served), literal(live_key(q)), literal(deliveries_key(q)),
                 literal(dead_key(q)), literal(backlog_key(q)), literal(rate_key(q))]
    return [f"%R~{key}" for key in keys]


def producer(producer_id: str, queues: list[Served], db: int) -> AclUser:
    """Push to ``queues``, own replies, cache and model info of their models, gauges, events,
    the backlog counters it adds to and the cancellation marks it leaves."""
    root = [*_BASE, "+lpush", "+rpush", "+publish", "+blpop", "+lpop", "+llen", "+del",
            "+unlink", "+get", "+mget", "+incrby", "+hset", "+expire",
            f"~{reply_pattern(producer_id)}",
            *(f"%W~{key}" for s in queues for key in _lists(s)),
            *(f"~{literal(backlog_key(s.queue))}" for s in queues),
            *(f"%R~{literal(rate_key(s.queue))}" for s in queues),
            *(f"%W~{literal(cancel_key(s.queue))}" for s in queues),
            *(f"%R~{cache_pattern(s.model)}" for s in queues),
            *(f"%R~{literal(model_info_key(s.model, s.precision))}" for s in queues),
            "resetchannels", f"&{literal(event_channel(db, 'task-x'))[:-1]}*"]
    # Gauges and the lost-message probe read the queues, in a selector of read commands only,
    # so that the root's LPOP (for reply lists) can never pop a queue.
    gauges = ["+llen", "+lindex", "+lpos", "+zcount", "+zrangebyscore", "+hlen", "+hget",
              "+hgetall", *_gauges(queues)]
    return AclUser(f"embedq-producer-{producer_id}", "producer",
                   (*root, f"({' '.join(gauges)})"))


def worker(served: Served, db: int) -> AclUser:
    """Everything one worker of one queue needs, and nothing of another queue or model."""
    q = served.queue
    keys = [*_lists(served), literal(inflight_key(q, "")) + "*", literal(deliveries_key(q)),
            literal(dead_key(q)), literal(live_key(q)), literal(backlog_key(q)),
            literal(rate_key(q)), literal(cancel_key(q)), cache_pattern(served.model),
            literal(model_info_key(served.model, served.precision)),
            f"{literal(CACHE_STATS_NAMESPACE)}:*", literal(METRICS_ENDPOINTS_KEY)]
    channels = [literal(f"/{db}.") + "celeryev/*", literal(f"/{db}.celery.pidbox"),
                "celery-task-meta-*"]
    return AclUser(f"embedq-worker-{q}", "worker", (
        *_BASE, *_WORKER_COMMANDS, *(f"~{key}" for key in keys), *_KOMBU_KEYS,
        f"%W~{literal(reply_key(''))}*",  # any producer's replies: write, never read
        "resetchannels", *(f"&{channel}" for channel in channels)))


def dashboard(queues: list[Served]) -> AclUser:
    """Read-only gauges: no write command exists for this user."""
    # The texts-waiting gauge reads the lists in a script: a script's commands are checked
    # against the same read-only key patterns, so it can read and never write.
    reads = ["+llen", "+lindex", "+lrange", "+zcount", "+zrangebyscore", "+hlen", "+hgetall",
             "+hvals", "+get", "+evalsha_ro", "+script|load"]
    return AclUser("embedq-dashboard", "dashboard", (
        *_BASE, *reads, *_gauges(queues), f"%R~{literal(METRICS_ENDPOINTS_KEY)}",
        f"%R~{literal(EVAL_RESULTS_KEY)}", f"%R~{literal(CACHE_STATS_NAMESPACE)}:*",
        "resetchannels"))


def flower(queues: list[Served], db: int) -> AclUser:
    """The dashboard's reads plus Celery remote control (inspect) and event capture."""
    base = dashboard(queues)
    # Celery's remote control and event receiver run kombu's own Lua and list commands on
    # their own keys; the key patterns, not the commands, are what keeps them there.
    # Its event consumer is a kombu consumer: closing it runs kombu's restore of unacked
    # messages (Redis QoS), which takes ``unacked_mutex`` and reads ``unacked_index``.
    extra = [*_WORKER_COMMANDS,
             "~_kombu.binding*", "~*.reply.celery.pidbox*", "~celeryev.*", "%R~celery",
             "%R~celery??[0-9]", "~unacked", "~unacked_index", "~unacked_mutex",
             f"&{literal(f'/{db}.')}celeryev/*", f"&{literal(f'/{db}.celery.pidbox')}"]
    return AclUser("embedq-flower", "flower", (*base.rules, *extra))


def dead_letter_operator(queues: list[Served]) -> AclUser:
    """List, replay (back onto the queue) and purge every queue's dead letters."""
    commands = ["+scan", "+llen", "+lrange", "+lindex", "+rpop", "+ltrim", "+del", "+hdel",
                "+rpush", "+multi", "+exec", "+discard", "+watch", "+unwatch"]
    keys = [f"~{literal(dead_key(''))}*", f"%W~{literal(deliveries_key(''))}*",
            *(f"%W~{key}" for s in queues for key in _lists(s))]
    return AclUser("embedq-dead-letters", "dead-letters", (*_BASE, *commands, *keys,
                                                          "resetchannels"))


def acl_users(registry: Registry, producers: dict[str, list[str] | None], *,
              db: int = 0) -> list[AclUser]:
    """Every role's user: one per producer id (each limited to its use cases, None: all), one
    per worker queue, the dashboard, Flower and the dead-letters operator."""
    everything = served_queues(registry)
    users = [producer(pid, served_queues(registry, cases), db)
             for pid, cases in producers.items()]
    users += [worker(served, db) for served in everything]
    users += [dashboard(everything), flower(everything, db), dead_letter_operator(everything)]
    return users
