"""``embedq cache stats`` and ``embedq cache clear``: the vector cache from an operator's shell.

Light like the producer: it talks to the cache Redis only. Counters come from what each worker
process publishes every few seconds (their memory tiers live in those processes); key counts and
memory come from the server itself.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import click
import redis

from embedq.cli.options import json_option
from embedq.config.settings import Settings, load_settings
from embedq.tasks.cache_codec import TierStats
from embedq.tasks.names import CACHE_NAMESPACE, cache_pattern, cache_stats_pattern
from embedq.tasks.redis_guard import guarded_client

_SCAN_COUNT = 1000
_TIERS = ("memory", "redis")
_ADVISED_POLICY = "allkeys-lfu"


def _client() -> tuple[Settings, redis.Redis]:
    settings = load_settings()
    return settings, guarded_client(settings)


def _unreachable(settings: Settings, exc: Exception) -> click.ClickException:
    return click.ClickException(
        f"the cache Redis is not reachable ({exc}); check EMBEDQ_CACHE_URL / EMBEDQ_REDIS_URL"
        f" (now {settings.cache.rsplit('@', 1)[-1]})"
    )


def collect_stats(client: redis.Redis) -> dict[str, Any]:
    """Workers' summed tier counters, cached vectors per model and the server's memory facts."""
    published = list(client.scan_iter(match=cache_stats_pattern(), count=_SCAN_COUNT))
    pipe = client.pipeline(transaction=False)
    for key in published:
        pipe.hgetall(key)
    tiers = {tier: TierStats() for tier in _TIERS}
    for fields in pipe.execute():
        for tier in _TIERS:
            prefix = f"{tier}.".encode()
            mine = {k[len(prefix):].decode(): v for k, v in fields.items() if k.startswith(prefix)}
            tiers[tier] = tiers[tier] + TierStats.from_fields(mine)
    per_model: Counter[str] = Counter()
    start = len(CACHE_NAMESPACE) + 1
    for key in client.scan_iter(match=cache_pattern(), count=_SCAN_COUNT):
        per_model[key.decode()[start:].rsplit(":", 2)[0]] += 1
    memory, counters = client.info("memory"), client.info("stats")
    return {
        "workers": len(published),
        "tiers": {t: {**s.as_fields(), "hit_rate": round(s.hit_rate, 4)} for t, s in tiers.items()},
        "vectors_per_model": dict(sorted(per_model.items())),
        "server": {
            "used_memory": memory.get("used_memory"),
            "maxmemory": memory.get("maxmemory"),
            "maxmemory_policy": memory.get("maxmemory_policy"),
            "evicted_keys": counters.get("evicted_keys"),
            "expired_keys": counters.get("expired_keys"),
        },
    }


def _print_table(report: dict[str, Any]) -> None:
    columns = ["hits", "misses", "hit_rate", "entries", "bytes", "evictions", "errors",
               "corrupt", "writes"]
    rows = [["tier", *columns]] + [
        [tier, *(str(values[c]) for c in columns)] for tier, values in report["tiers"].items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    click.echo(f"worker processes reporting: {report['workers']}")
    models = ", ".join(f"{m} {n}" for m, n in report["vectors_per_model"].items()) or "none"
    click.echo(f"cached vectors per model: {models}")
    server = report["server"]
    click.echo("redis: " + ", ".join(f"{k} {v}" for k, v in server.items()))
    if server["maxmemory_policy"] != _ADVISED_POLICY:
        click.echo(f"hint: a Redis kept for the cache works best with maxmemory set and "
                   f"maxmemory-policy {_ADVISED_POLICY}")


@click.command()
@json_option
def stats(as_json: bool) -> None:
    """Hits, misses, bytes and evictions per tier, and what the cache Redis holds."""
    settings, client = _client()
    try:
        report = collect_stats(client)
    except redis.RedisError as exc:
        raise _unreachable(settings, exc) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_table(report)


def drop_model(client: redis.Redis, model: str | None) -> int:
    """Delete one model's cached vectors (all models' for None) by SCAN; returns how many."""
    dropped = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=cache_pattern(model), count=_SCAN_COUNT):
        batch.append(key)
        if len(batch) >= _SCAN_COUNT:
            dropped += int(client.unlink(*batch))
            batch.clear()
    if batch:
        dropped += int(client.unlink(*batch))
    return dropped


@click.command()
@click.option("--model", "-m", "models", multiple=True, help="Model whose entries to drop.")
@click.option("--all", "everything", is_flag=True, help="Drop every model's entries.")
def clear(models: tuple[str, ...], everything: bool) -> None:
    """Drop cached vectors of one model (or of all) from the cache Redis.

    Worker processes keep their memory tiers until restarted; other models are untouched.
    """
    if bool(models) == everything:
        raise click.UsageError("give --model M (repeatable) or --all")
    settings, client = _client()
    try:
        for model in models or (None,):
            dropped = drop_model(client, model)
            click.echo(f"dropped {dropped} cached vectors of {model or 'all models'}")
    except redis.RedisError as exc:
        raise _unreachable(settings, exc) from exc


cache = click.Group("cache", help="Inspect or clear the shared vector cache.",
                    commands=[stats, clear])
