"""The model registry and the use-case routes, loaded from ``models.json`` and ``routes.json``.

The JSON files are the only place where models and routes exist: a producer can name a use case,
never a path or a class. Both files are validated on load and every error names the file, the
key and what was expected, because a typo in a route should stop a deploy, not a request.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from embedq.config.errors import ConfigError, UnknownModelError, UnknownUseCaseError
from embedq.config.precisions import (
    INT8_MAX_SPEARMAN_DROP,
    INT8_MIN_MEAN_COSINE,
    OutputDtype,
    Precision,
)
from embedq.config.prompts import check_route_prompts
from embedq.config.sources import (
    Frozen,
    HashingSource,
    HubSource,
    PackageSource,
    PathSource,
    Source,
    SplitZipPart,
    SplitZipSource,
)

# The enums and sources are defined beside this module and still importable from it.
__all__ = [
    "INT8_MAX_SPEARMAN_DROP", "INT8_MIN_MEAN_COSINE", "MIN_DIM", "MODELS_FILE", "ROUTES_FILE",
    "HashingSource", "HubSource", "Int8Quality", "ModelSpec", "OutputDtype", "PackageSource",
    "PathSource", "Precision", "Registry", "RouteSpec", "Source", "SplitZipPart",
    "SplitZipSource", "load_registry",
]

MODELS_FILE = "models.json"
ROUTES_FILE = "routes.json"
MIN_DIM = 8
_M = TypeVar("_M", bound=BaseModel)


class Int8Quality(Frozen):
    """How the model's int8 recipe is built, and how it measured once (for people).

    Whether a worker *serves* int8 is measured per CPU at its first start (the int8 kernels
    differ per CPU: VNNI, AMX, AVX2); these figures are the reference measurement of the recipe,
    from benchmarks/bench_precision.py, against `INT8_MIN_MEAN_COSINE` and
    `INT8_MAX_SPEARMAN_DROP`.
    """

    mean_cosine: float = Field(ge=-1, le=1, description="Mean cosine of int8 to fp32 vectors.")
    spearman_drop: float = Field(description="STS-B dev Spearman of fp32 minus that of int8.")
    keep_fp32: tuple[str, ...] = Field(
        default=(), description="Node kinds left unquantized, chosen by measured loss: "
        "qkv, attn_out, ffn_in, ffn_out, or one layer's as 'ffn_out:11' (ONNX Runtime's "
        "dynamic int8 and OpenVINO's static int8; the 'weights' recipe compresses every layer).")
    openvino: Literal["static", "weights"] = Field(
        default="static", description="How OpenVINO's int8 IR is built: 'static' (NNCF "
        "post-training quantization, activation ranges calibrated once) or 'weights' (NNCF "
        "int8 weight compression; OpenVINO's CPU plugin quantizes activations per group of "
        "32 channels at run time, so ranges follow every input: for models whose activations "
        "a calibration cannot cover, as mpnet's on long repetitive texts).")


class ModelSpec(Frozen):
    """One embedding model: where it comes from and what it can do."""

    name: str
    source: Source
    dim: int = Field(ge=MIN_DIM, description="Native output dimension.")
    max_tokens: int = Field(ge=8, description="Longer inputs are truncated and flagged.")
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    matryoshka_dims: tuple[int, ...] = ()
    max_batch_tokens: int | None = Field(default=None, ge=64)
    fp16_activations: bool = Field(
        default=True, description="False for models whose activations overflow in fp16.")
    int8: Int8Quality | None = Field(default=None, description="Measured int8 quality.")
    prompts: dict[str, str] = Field(
        default_factory=dict, description="Named prompts, as config_sentence_transformers.json "
        "holds them: {'query': 'query: '}; see `embedq.config.prompts`.")
    default_prompt_name: str | None = None
    pooling: Literal["mean", "cls", "other"] = Field(
        default="mean", description="What the ONNX export must reproduce: mean or cls pooling "
        "(then at most a Normalize); 'other' (max pooling, a Dense layer, a pooling without "
        "the prompt) is served by PyTorch alone.")
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if Precision.AUTO in self.precisions:
            raise ValueError("precisions lists what the model can run at; 'auto' is a choice "
                             "routes and workers make, not a precision")
        if Precision.FP16 in self.precisions and not self.fp16_activations:
            raise ValueError("fp16 is listed but fp16_activations is false; use bf16")
        if Precision.INT8 in self.precisions and self.int8 is None:
            raise ValueError("int8 is listed without its measured quality ('int8': {...})")
        if any(d > self.dim for d in self.matryoshka_dims):
            raise ValueError(f"matryoshka_dims must not exceed the native dim {self.dim}")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(f"default_prompt_name {self.default_prompt_name!r} is not one of "
                             f"prompts ({', '.join(self.prompts) or 'none'})")
        return self

    def allows(self, precision: Precision) -> bool:
        """True when a route or a worker may ask for ``precision`` (auto always resolves)."""
        return precision is Precision.AUTO or precision in self.precisions


class RouteSpec(Frozen):
    """A use case: which model, at which precision, and what the vectors look like."""

    name: str
    model: str
    precision: Precision = Precision.FP32
    dim: int | None = Field(default=None, ge=MIN_DIM, description="Default: the model's.")
    normalize: bool = True
    output_dtype: OutputDtype = OutputDtype.FLOAT32
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]+$")
    fallback: tuple[str, ...] = Field(
        default=(), description="Models to use, in order, while the first has no live worker.")
    shed: bool = Field(default=True, description="Refuse interactive requests at once when "
                       "they cannot be answered before their deadline (bulk work never is).")
    # Prompts (see `embedq.config.prompts`): the route's own, and what a request may pick.
    prompt: str | None = Field(default=None, description="Prompt text put before every text.")
    prompt_name: str | None = Field(default=None, description="A prompt of the model's.")
    prompt_names: tuple[str, ...] = Field(
        default=(), description="Prompt names a request may pick instead of the route's.")
    allow_prompt_text: bool = Field(
        default=False, description="True: a request may send its own prompt text.")
    # Where the route's queues and vectors live when one Redis is not enough
    # (`embedq.tasks.brokers`); ``${VAR}`` is read from the environment, so no password sits
    # in the file.
    broker_url: str | None = Field(default=None, description="The broker Redis of the "
                                   "route's queues (default: EMBEDQ_BROKER_URL/REDIS_URL).")
    cache_url: str | None = Field(default=None, description="The vector cache Redis of the "
                                  "route (default: EMBEDQ_CACHE_URL/REDIS_URL).")
    description: str = ""

    @property
    def chain(self) -> tuple[str, ...]:
        """The route's models in order of preference."""
        return (self.model, *self.fallback)

    def served_by(self, model: str) -> RouteSpec:
        """This route as served by one model of its chain (its own queue, same settings)."""
        return self if model == self.model else self.model_copy(update={"model": model})


class _ModelsFile(Frozen):
    version: Literal[1]
    models: dict[str, dict[str, object]]


class _RoutesFile(Frozen):
    version: Literal[1]
    default: str
    routes: dict[str, dict[str, object]]

    @model_validator(mode="after")
    def _default_exists(self) -> _RoutesFile:
        if self.default not in self.routes:
            raise ValueError(f"default route {self.default!r} is not one of {sorted(self.routes)}")
        return self


class Registry:
    """Models and routes, cross-checked: every route's model, precision and dim is valid."""

    def __init__(
        self, models: dict[str, ModelSpec], routes: dict[str, RouteSpec], default_route: str
    ) -> None:
        self.models = models
        self.routes = routes
        self.default_route = default_route

    def route(self, use_case: str | None) -> RouteSpec:
        """The route for a use case (the default route for None)."""
        name = self.default_route if use_case is None else use_case
        try:
            return self.routes[name]
        except (KeyError, TypeError):
            raise UnknownUseCaseError(use_case, sorted(self.routes)) from None

    def model(self, name: str) -> ModelSpec:
        """The model spec for a registered name."""
        try:
            return self.models[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self.models))
            raise UnknownModelError(f"unknown model {name!r}; known: {known}") from None

    def output_dim(self, route: RouteSpec) -> int:
        """The dimension of the vectors a route returns."""
        return route.dim or self.model(route.model).dim


def _format_error(file: Path, prefix: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f", got {got!r}"
        lines.append(f"{file}: {key}: {err['msg']}{shown}")
    return "; ".join(lines)


def _read_json(file: Path) -> object:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON: {exc}") from exc


def _parse(cls: type[_M], data: object, file: Path, prefix: str) -> _M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(file, prefix, exc)) from exc


def _check_route(route: RouteSpec, models: dict[str, ModelSpec], file: Path) -> None:
    where = f"{file}: routes.{route.name}"
    if route.fallback and route.queue:
        raise ConfigError(f"{where}.queue: a route with a fallback chain uses each model's own "
                          "queue; remove 'queue' or the fallback")
    for key, model in (("model", route.model), *(("fallback", m) for m in route.fallback)):
        if model not in models:
            raise ConfigError(f"{where}.{key}: unknown model {model!r}; known: "
                              f"{', '.join(sorted(models))}")
        spec = models[model]
        if not spec.allows(route.precision):
            allowed = ", ".join(p.value for p in (*spec.precisions, Precision.AUTO))
            raise ConfigError(f"{where}.precision: {model} allows {allowed}, "
                              f"got {route.precision.value!r}")
        if route.dim is not None and route.dim > spec.dim:
            raise ConfigError(f"{where}.dim: {model} gives {MIN_DIM}..{spec.dim} dimensions, "
                              f"got {route.dim}")
        check_route_prompts(route, spec, where)


def load_registry(config_dir: Path | None = None) -> Registry:
    """Load and cross-check ``models.json`` and ``routes.json`` (packaged ones by default)."""
    base = Path(str(resources.files("embedq.config"))) if config_dir is None else config_dir
    models_file, routes_file = base / MODELS_FILE, base / ROUTES_FILE

    models_doc = _parse(_ModelsFile, _read_json(models_file), models_file, "")
    models = {
        name: _parse(ModelSpec, {"name": name, **raw}, models_file, f"models.{name}")
        for name, raw in models_doc.models.items()
    }
    routes_doc = _parse(_RoutesFile, _read_json(routes_file), routes_file, "")
    routes = {
        name: _parse(RouteSpec, {"name": name, **raw}, routes_file, f"routes.{name}")
        for name, raw in routes_doc.routes.items()
    }
    for route in routes.values():
        _check_route(route, models, routes_file)
    return Registry(models, routes, routes_doc.default)
