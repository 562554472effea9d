"""The Redis servers the manifests own for routes that name their own broker or cache.

A route says ``"broker_url": "${EMBEDQ_ETL_BROKER_URL}"`` in ``routes.json`` (the ConfigMap every
pod mounts); the render then owns that Redis: a StatefulSet (broker) or a Deployment (cache)
named after the route, and every embedq pod gets the variable, pointing at it with the password
from the ``embedq-redis`` Secret. A worker finds its queue's broker through the same routes file
(`embedq.tasks.brokers`), so its Deployment needs nothing of its own. A route whose URL is
spelled out (an external Redis, or a variable mixed with other text) is left to the user: the
render creates nothing for it, and the user's pods must be given its variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from embedq.config.registry import Registry

_WHOLE_VARIABLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class RouteRedis:
    """One Redis the render owns: which variable names it, its Service name and role."""

    variable: str
    name: str
    role: str  # "broker" or "cache"

    @property
    def component(self) -> str:
        """Its pods' component label (distinct per server, so selectors never overlap)."""
        return self.name.removeprefix("embedq-")

    def env(self) -> dict[str, str]:
        """The variable, as every embedq pod sees it."""
        return {"name": self.variable,
                "value": f"redis://:$(REDIS_PASSWORD)@{self.name}:6379/0"}


def route_redis(registry: Registry) -> list[RouteRedis]:
    """Every Redis routes name by a bare ``${VAR}``, one per variable, in route order."""
    found: dict[str, RouteRedis] = {}
    for route in registry.routes.values():
        for role in ("broker", "cache"):
            match = _WHOLE_VARIABLE.match(getattr(route, f"{role}_url") or "")
            if match and match.group(1) not in found:
                slug = re.sub(r"[^a-z0-9-]", "-", route.name.lower()).strip("-")
                found[match.group(1)] = RouteRedis(match.group(1), f"embedq-{role}-{slug}", role)
    return list(found.values())


def env_of(owned: tuple[RouteRedis, ...]) -> list[dict[str, Any]]:
    """The variables of ``owned`` for an embedq container."""
    return [server.env() for server in owned]
