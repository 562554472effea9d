"""Which prompt a request's texts are embedded with: the route decides, a request may pick.

Retrieval models embed a query and a document differently (E5 ``query: ``/``passage: ``,
nomic ``search_query: ``, EmbeddingGemma's named prompts); sentence-transformers puts the prompt
text before each text (``encode(texts, prompt=...)``), and so does embedq's worker. A route names
its prompt as text (``prompt``) or as one of the model's named prompts (``prompt_name``, from the
model's ``config_sentence_transformers.json``, copied into models.json); a route with neither
uses the model's ``default_prompt_name`` as sentence-transformers does. A request may pick one of
the names the route lists in ``prompt_names``, and may send its own text only where the route
says ``allow_prompt_text``: a caller of the gateway must not be able to steer the vectors of a
shared cache with arbitrary instructions.

The resolved prompt *text* travels in the request and is part of the cache key, so two routes
on one model with different prompts share the model's queue and workers but never a vector.
Names are resolved against the route's first model; a fallback model must define the same
names (checked at load) and is sent the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedq.config.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from embedq.config.registry import ModelSpec, RouteSpec


@dataclass(frozen=True, slots=True)
class Prompt:
    """A resolved prompt: its text ("" for none) and the name it came from, if any."""

    text: str = ""
    name: str | None = None


NO_PROMPT = Prompt()


def check_route_prompts(route: RouteSpec, spec: ModelSpec, where: str) -> None:
    """A route's prompt settings against one model of its chain, at load time."""
    if route.prompt is not None and route.prompt_name is not None:
        raise ConfigError(f"{where}: set 'prompt' (text) or 'prompt_name' (a prompt of the "
                          "model's), not both")
    names = [("prompt_name", route.prompt_name)] if route.prompt_name is not None else []
    names += [("prompt_names", name) for name in route.prompt_names]
    for key, name in names:
        if name not in spec.prompts:
            known = ", ".join(sorted(spec.prompts)) or "none (add 'prompts' to the model)"
            raise ConfigError(f"{where}.{key}: model {spec.name} has no prompt {name!r}; "
                              f"its prompts: {known}")


def route_default(route: RouteSpec, spec: ModelSpec) -> Prompt:
    """The prompt a route uses when a request picks none."""
    if route.prompt is not None:
        return Prompt(route.prompt)
    name = route.prompt_name or spec.default_prompt_name
    return NO_PROMPT if name is None else Prompt(spec.prompts[name], name)


def resolve_prompt(route: RouteSpec, spec: ModelSpec, *, prompt_name: str | None = None,
                   prompt: str | None = None) -> Prompt:
    """The prompt of one request to ``route``: the route's, or one it lets the request pick.

    Refusals are `InvalidInputError`s naming what the route allows, raised before anything is
    enqueued.
    """
    if prompt is not None and prompt_name is not None:
        raise InvalidInputError("pass prompt_name or prompt, not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string, got {type(prompt).__name__}")
        if not route.allow_prompt_text:
            raise InvalidInputError(
                f"use case {route.name!r} does not take prompt text from a request; pick a "
                f"prompt_name ({_allowed(route)}) or set allow_prompt_text on the route")
        return Prompt(prompt)
    if prompt_name is None:
        return route_default(route, spec)
    if prompt_name != route.prompt_name and prompt_name not in route.prompt_names:
        raise InvalidInputError(f"use case {route.name!r} offers no prompt_name "
                                f"{prompt_name!r}; it offers: {_allowed(route)}")
    return Prompt(spec.prompts[prompt_name], prompt_name)


def _allowed(route: RouteSpec) -> str:
    names = dict.fromkeys([*([route.prompt_name] if route.prompt_name else []),
                           *route.prompt_names])
    return ", ".join(names) or "none"
