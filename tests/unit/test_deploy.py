"""docker-compose.yml follows the routes (Docker itself does not run here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from embedq.config import load_registry
from embedq.ops.stack import queues_of
from tests.support import HASHING_MODEL, write_config

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_one_worker_service_per_configured_queue():
    services = _compose()["services"]
    served = set()
    for name, service in services.items():
        command = service.get("command", [])
        if command[:2] == ["embedq", "worker"]:
            model = command[command.index("--model") + 1]
            precision = command[command.index("--precision") + 1]
            served.add(f"embed.{model}.{precision}")
            assert name == f"worker-{model}-{precision}"
            assert "healthcheck" in service
    assert served == set(queues_of(load_registry()))


def test_services_have_healthchecks_and_flower_needs_credentials():
    services = _compose()["services"]
    assert all("healthcheck" in s for s in services.values())
    assert "embedq.ops.flower_app" in services["flower"]["command"]
    flower_auth = services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert flower_auth.startswith("${FLOWER_BASIC_AUTH:?")
    dashboard = services["dashboard"]["environment"]
    assert dashboard["EMBEDQ_DASHBOARD_PASSWORD"].startswith("${DASHBOARD_PASSWORD:?")
    assert "noeviction" in services["redis"]["command"]
    assert "allkeys-lfu" in services["redis-cache"]["command"]


def test_the_gateway_service_needs_keys_and_gets_them_from_the_environment():
    gateway = _compose()["services"]["gateway"]
    assert gateway["command"][:2] == ["embedq", "gateway"]
    assert "${EMBEDQ_GATEWAY_API_KEYS:?" in gateway["environment"]["EMBEDQ_GATEWAY_API_KEYS"]
    assert "/health" in " ".join(gateway["healthcheck"]["test"])


def test_flower_outside_loopback_needs_credentials():
    from embedq.config import Settings
    from embedq.config.errors import ConfigError
    from embedq.ops.stack import flower_command

    command, env = flower_command(Settings(), "127.0.0.1", 5555)
    assert "--address=127.0.0.1" in command
    assert "embedq.ops.flower_app" in command
    assert env == {}
    with pytest.raises(ConfigError, match="EMBEDQ_FLOWER_USER"):
        flower_command(Settings(), "0.0.0.0", 5555)
    command, env = flower_command(Settings(flower_user="ops", flower_password="s3cret"),
                                  "0.0.0.0", 1)
    assert env == {"FLOWER_BASIC_AUTH": "ops:s3cret"}
    assert not any("s3cret" in part for part in command)  # never in argv (ps shows it)


def test_up_starts_a_worker_for_every_model_of_a_fallback_chain(tmp_path):
    folder = write_config(tmp_path, {"a": HASHING_MODEL, "b": HASHING_MODEL},
                          {"r": {"model": "a", "fallback": ["b"]}, "s": {"model": "b"}},
                          default="r")
    assert queues_of(load_registry(folder)) == ["embed.a.fp32", "embed.b.fp32"]
