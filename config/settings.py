"""Runtime settings from ``EMBEDQ_*`` environment variables.

A `Settings` object is built once at process start (a producer's client, a worker's app) and
passed down explicitly; nothing reads the environment at import time. One ``EMBEDQ_REDIS_URL``
serves broker, results and cache on a laptop; each can point elsewhere in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from embedq.config.errors import ConfigError
from embedq.config.urls import safe_url

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")
_URL_FIELDS = ("redis_url", "broker_url", "result_backend_url", "cache_url")
_PASSWORD_FIELDS = ("flower_password", "dashboard_password")


class Settings(BaseSettings):
    """Everything an embedq process needs to know that is not in the JSON registry."""

    model_config = SettingsConfigDict(env_prefix="EMBEDQ_", frozen=True, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    result_backend_url: str | None = None
    cache_url: str | None = None

    config_dir: Path | None = Field(
        default=None, description="Folder with models.json and routes.json (default: packaged)."
    )
    model_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "embedq",
        description="Where assembled or exported model files are kept.",
    )

    # Producer side.
    chunk_size: int = Field(default=64, ge=1, le=4096, description="Texts per task.")
    max_in_flight: int = Field(default=8, ge=1, le=1024, description="Chunks per embed_many.")
    max_text_chars: int = Field(default=100_000, ge=1, description="Longest text accepted.")
    timeout_s: float = Field(default=120.0, gt=0, description="Default wait for a result.")
    result_expires_s: int = Field(default=3600, ge=60, description="Unread results expire.")
    resend_after_s: float = Field(default=15.0, gt=0, description="Unanswered this long, a "
                                  "message is looked for and, if lost, sent again.")
    max_resends: int = Field(default=3, ge=0, description="Times a lost message is sent again.")
    shed_headroom: float = Field(
        default=0.5, gt=0, le=1, description="Refuse an interactive request at once "
        "(OverloadedError) when the work queued ahead of it would take more than this share of "
        "its remaining time; routes with \"shed\": false never refuse.")
    bulk_timeout_s: float = Field(default=600.0, gt=0, description="Default wait for each "
                                  "chunk of embed_many and corpus jobs (bulk: never refused).")
    sentinel_master: str = Field(default="mymaster", description="Master name for sentinel:// "
                                 "URLs that do not say ?master_name=.")

    # Worker side.
    batch_texts: int = Field(default=64, ge=1, description="Texts a consumer claims as one "
                             "batch (more wait on the queue for the next one).")
    batch_interval_s: float = Field(default=0.005, ge=0, description="While traffic flows, the "
                                    "longest wait for more texts when a claim came up short.")
    lifo_after_s: float = Field(
        default=0.0, ge=0, description="Once the oldest interactive request has waited this "
        "long, a worker serves the newest first (adaptive LIFO); 0, the default: always oldest "
        "first, which measured the better goodput wherever producers shed.")
    max_deliveries: int = Field(default=3, ge=1, description="Deliveries of a message whose "
                                "worker process died each time before it goes to the dead letters.")
    task_events: bool = Field(default=True, description="Send Celery task events (Flower).")
    max_batch_tokens: int = Field(default=4096, ge=64, description="Padded tokens per pass.")
    max_batch_size: int = Field(default=32, ge=1, description="Texts per forward pass.")
    torch_threads: int | None = Field(default=None, ge=1, description="Per pool process.")
    fp32_backend: Literal["auto", "onnx", "torch"] = Field(
        default="auto", description="What serves fp32 on a CPU: auto = the optimized ONNX "
        "graph where it measured faster than PyTorch and equal to it.")
    auto_candidates: tuple[str, ...] | None = Field(
        default=None, description="Limit what the measured choices (auto, and the backend "
        'of fp32 and int8) may measure and pick, e.g. ["torch-fp32", "onnx-int8"]; default: '
        "every candidate the model allows.")
    liveness_interval_s: float = Field(
        default=5.0, gt=0, description="How often a worker says its queues have a consumer; "
        "an entry lives three intervals, so producers skip a dead worker's queue soon after.")

    # Vector cache (both sides): a per-process memory tier in workers, a shared Redis tier.
    cache_enabled: bool = Field(default=True, description="Use the vector cache at all.")
    cache_memory_bytes: int = Field(
        default=64 * 2**20, ge=0, description="Memory tier per worker process (0: none)."
    )
    cache_ttl_s: int = Field(default=7 * 86400, ge=1, description="Redis entry lifetime.")
    cache_storage_dtype: Literal["float16", "float32"] = Field(
        default="float16", description="How cached vectors are stored (float16 halves them)."
    )
    cache_read_through: bool = Field(
        default=True, description="Producers answer cached texts without enqueueing."
    )
    cache_socket_timeout_s: float = Field(
        default=0.25, gt=0, description="Longest wait on a cache Redis reply."
    )
    cache_connect_timeout_s: float = Field(
        default=0.25, gt=0, description="Longest wait to connect to the cache Redis."
    )
    cache_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest pause between retries of a down cache Redis."
    )
    cache_model_info_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a producer trusts a worker's published revision."
    )

    metrics_port: int | None = Field(default=None, ge=1, le=65535,
                                     description="Serve Prometheus /metrics from each worker.")
    metrics_address: str = Field(default="127.0.0.1", description="Address of /metrics.")

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    flower_user: str | None = None
    flower_password: str | None = None

    # embedq dashboard and embedq eval.
    dashboard_user: str | None = Field(default=None, description="Dashboard basic-auth user.")
    dashboard_password: str | None = Field(default=None,
                                           description="Dashboard basic-auth password.")
    eval_results_file: Path = Field(
        default=Path.home() / ".local" / "state" / "embedq" / "eval-results.jsonl",
        description="Every `embedq eval` result, one JSON line each.",
    )

    # The HTTP gateway (`embedq gateway`). Keys never come from argv, where `ps` shows them.
    gateway_api_keys: SecretStr | None = Field(
        default=None, description="Bearer keys the gateway accepts, comma-separated.")
    gateway_api_keys_file: Path | None = Field(
        default=None, description="A file of bearer keys, one a line ('#' starts a comment).")
    gateway_max_body_bytes: int = Field(default=4 * 2**20, ge=1024,
                                        description="Largest request body the gateway reads.")
    gateway_max_inputs: int = Field(default=2048, ge=1, description="Texts per request.")
    gateway_timeout_s: float = Field(default=30.0, gt=0,
                                     description="Longest wait for a request's vectors.")
    gateway_shed_headroom: float = Field(
        default=0.2, gt=0, le=1, description="EMBEDQ_SHED_HEADROOM for requests over HTTP: "
        "an HTTP request holds a connection of its client's bounded pool while it waits, so the "
        "gateway queues less of a request's time than a library caller and answers 429 sooner.")

    # Issue 20 (Celery-native embed task): Celery's own option, for Celery producers' tasks.
    task_track_started: bool = Field(
        default=False, description="Store STARTED for a Celery producer's embed task before its "
        "forward pass, as Celery's task_track_started does (one more write per such task).")

    # Issue 24 (least privilege): a producer id a deployment fixes, so that a Redis ACL can give
    # each producer its own reply lists (``embedq:v1:reply:<id>:*``) and nobody else's.
    producer_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of this producer's reply lists; `embedq acl --producer ID` gives "
        "the matching Redis user access to them alone.")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Issue 24: a settings object in a log line, a traceback or a debugger shows its Redis
        URLs without their passwords and no password field at all (keys are SecretStr)."""
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                value = safe_url(value)
            elif name in _PASSWORD_FIELDS and value is not None:
                value = "***"
            yield name, value

    @field_validator("redis_url", "broker_url", "result_backend_url", "cache_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_REDIS_SCHEMES):
            raise ValueError("expected a redis://, rediss://, unix:// or sentinel:// URL, got "
                             f"{safe_url(value)!r}")
        return value

    @property
    def broker(self) -> str:
        """Broker URL: ``EMBEDQ_BROKER_URL`` or the shared Redis."""
        return self.broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        """Result backend URL: ``EMBEDQ_RESULT_BACKEND_URL`` or the shared Redis."""
        return self.result_backend_url or self.redis_url

    @property
    def cache(self) -> str:
        """Vector cache URL: ``EMBEDQ_CACHE_URL`` or the shared Redis."""
        return self.cache_url or self.redis_url


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into a `ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"EMBEDQ_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None  # the cause shows inputs
