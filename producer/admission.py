"""What a request asks of its route and whether the route can take it, both settled in the
caller's thread before anything is enqueued.

`request_spec` resolves the dimension and the prompt (issue 22) into the `RequestSpec` the
dispatcher groups, caches and sends by, so it never needs to know how either was chosen. `admit`
sheds an interactive request the queued work would keep past its deadline (issue 19), from the
sender's last load reading: no round trip of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedq.config.errors import OverloadedError
from embedq.config.prompts import resolve_prompt
from embedq.config.registry import Registry, RouteSpec
from embedq.producer.inputs import check_dim
from embedq.producer.jobs import RequestSpec
from embedq.producer.load import refuse_after

if TYPE_CHECKING:
    from embedq.producer.dispatch import Dispatcher


def request_spec(registry: Registry, route: RouteSpec, dim: int | None, *, bulk: bool,
                 prompt_name: str | None, prompt: str | None) -> RequestSpec:
    """The spec for ``route``; ``prompt_name`` picks one of the prompts the route offers,
    ``prompt`` sends prompt text where the route allows it, with neither the route's own
    prompt (`embedq.config.prompts`). Refusals are typed errors naming the fix."""
    chosen = resolve_prompt(route, registry.model(route.model), prompt_name=prompt_name,
                            prompt=prompt)
    return RequestSpec(route, check_dim(registry, route, dim), bulk, chosen)


def admit(dispatcher: Dispatcher, use_case: str, queue: str, wait: float,
          headroom: float) -> None:
    """Refuse what cannot be answered in time (no Redis: the sender's last reading)."""
    load = dispatcher.load
    ahead = load.wait_s(queue, dispatcher.outstanding.texts(queue))
    retry = refuse_after(ahead, wait, headroom)
    if retry is None:
        return
    if load.stale(queue):
        dispatcher.want_reading(queue)
    raise OverloadedError(
        f"use case {use_case!r} is overloaded: the texts queued ahead on {queue} need "
        f"about {ahead:.1f}s, more than this request's {wait:g}s deadline allows "
        f"(EMBEDQ_SHED_HEADROOM={headroom:g}); nothing was enqueued. "
        f"Retry in {retry:g}s, or add workers for {queue}", retry_after_s=retry)
