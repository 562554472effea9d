"""Route URLs that name environment variables (`config.urls.expand_variables`) and the route
settings built from them (`tasks.brokers.route_settings`)."""

from __future__ import annotations

import pytest

from embedq.config.errors import ConfigError
from embedq.config.registry import RouteSpec
from embedq.config.settings import Settings
from embedq.config.urls import expand_variables
from embedq.tasks.brokers import route_settings


def test_variables_are_expanded_and_a_missing_one_is_named():
    env = {"HOST": "redis.example", "PASSWORD": "pw"}
    assert expand_variables("rediss://:${PASSWORD}@${HOST}:6380/1", "here", env) == (
        "rediss://:pw@redis.example:6380/1")
    assert expand_variables("redis://plain:6379/0", "here", {}) == "redis://plain:6379/0"
    with pytest.raises(ConfigError, match=r"routes.etl.broker_url names \$\{NOPE\}"):
        expand_variables("${NOPE}", "routes.etl.broker_url", env)
    with pytest.raises(ConfigError, match="EMPTY"):
        expand_variables("${EMPTY}", "x", {"EMPTY": ""})


def test_route_settings_put_the_route_urls_in(monkeypatch):
    settings = Settings(redis_url="redis://default:6379/0")
    plain = RouteSpec(name="search", model="m")
    assert route_settings(settings, plain) is settings
    monkeypatch.setenv("ETL_BROKER", "rediss://:secret@etl:6380/0")
    own = RouteSpec(name="etl", model="m", broker_url="${ETL_BROKER}")
    moved = route_settings(settings, own)
    assert moved.broker == "rediss://:secret@etl:6380/0"
    assert moved.cache == "redis://default:6379/0"  # the cache stays shared unless named
    assert "secret" not in repr(moved)
    wrong = RouteSpec(name="etl", model="m", broker_url="http://etl/")
    with pytest.raises(ConfigError, match=r"routes\.etl\.broker_url: expected a redis://"):
        route_settings(settings, wrong)
