"""Scoped gateway keys as pure logic: the key file's lines, token buckets, what a grant admits,
and a rotated file taking effect (the HTTP side is in tests/integration/test_gateway_keys.py)."""

from __future__ import annotations

import os

import orjson
import pytest

from embedq.config.errors import ConfigError
from embedq.config.settings import Settings
from embedq.gateway import auth
from embedq.gateway.auth import KeyCheck
from embedq.gateway.errors import (
    ApiKeyError,
    RateLimitedError,
    RequestTooLargeError,
    UseCaseNotAllowedError,
    error_response,
)
from embedq.gateway.keyfile import fingerprint, parse_line
from embedq.gateway.rates import TokenBucket, retry_after

SECRET = "sk-team-search-5b0c9e"


def test_a_plain_line_is_a_key_for_everything_and_options_scope_it():
    plain = parse_line("  legacy-key  ", "f line 1")
    assert plain is not None
    assert (plain.use_cases, plain.rate, plain.burst) == (None, None, None)
    scoped = parse_line(f"{SECRET} use_cases=search,qa rate=2.5 burst=10", "f line 2")
    assert scoped is not None
    assert scoped.use_cases == {"search", "qa"}
    assert (scoped.rate, scoped.burst) == (2.5, 10)
    assert scoped.fingerprint == fingerprint(SECRET)
    assert len(scoped.fingerprint) == 8
    defaulted = parse_line("k rate=3.2", "f")
    assert defaulted is not None
    assert defaulted.burst == 4
    assert parse_line("# a comment", "f") is None
    assert parse_line("   ", "f") is None


@pytest.mark.parametrize(("line", "problem"), [
    (f"{SECRET} scope=search", "unknown option 'scope'"),
    (f"{SECRET} rate=fast", "rate='fast' is not a positive number"),
    (f"{SECRET} rate=0", "is not a positive number"),
    (f"{SECRET} burst=5", "burst= needs a rate="),
    (f"{SECRET} use_cases", "unknown option 'use_cases'"),
])
def test_a_bad_line_names_the_line_and_never_the_key(line, problem):
    with pytest.raises(ConfigError, match=problem) as caught:
        parse_line(line, "keys line 7")
    assert "keys line 7" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_bucket_gives_its_burst_then_its_rate():
    now = [100.0]
    bucket = TokenBucket(rate=4.0, burst=5, clock=lambda: now[0])
    assert bucket.take(5) == 0.0
    assert bucket.take(3) == 0.75  # nothing taken: the whole request waits
    now[0] += 0.5
    assert bucket.take(3) == 0.25
    now[0] += 0.25
    assert bucket.take(3) == 0.0
    now[0] += 60
    assert bucket.take(5) == 0.0  # never more than the burst, however long it was idle
    assert bucket.take(1) > 0
    assert retry_after(0.01) == 1
    assert retry_after(2.2) == 3


def _check(tmp_path, text: str) -> KeyCheck:
    keys = tmp_path / "keys"
    keys.write_text(text)
    return KeyCheck.for_host(Settings(gateway_api_keys_file=keys), "0.0.0.0")


def test_a_grant_admits_only_its_use_cases_and_rate(tmp_path):
    check = _check(tmp_path, f"open-key\n{SECRET} use_cases=search rate=0.5 burst=3\n")
    check.check("Bearer open-key").admit("etl", 1000)
    grant = check.check(f"Bearer {SECRET}")
    assert grant.allows("search")
    assert not grant.allows("etl")
    assert check.check("Bearer open-key").allows("etl")
    with pytest.raises(UseCaseNotAllowedError) as denied:
        grant.admit("etl", 1)
    response = error_response(denied.value, "r1")
    body = orjson.loads(response.body)["error"]
    assert response.status_code == 403
    assert (body["code"], body["param"]) == ("use_case_not_allowed", "model")
    assert fingerprint(SECRET) in body["message"]
    assert SECRET not in body["message"]
    grant.admit("search", 3)
    with pytest.raises(RateLimitedError) as limited:
        check.check(f"Bearer {SECRET}").admit("search", 2)  # the bucket is the key's, not the
    response = error_response(limited.value, "r2")          # request's
    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"  # 2 texts at 0.5 per second
    with pytest.raises(RequestTooLargeError, match="at once"):
        grant.admit("search", 4)
    with pytest.raises(ApiKeyError):
        check.check("Bearer search")


def test_a_rotated_file_takes_effect_and_a_broken_one_keeps_the_old_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_EVERY_S", 0.0)
    check = _check(tmp_path, "old-key\n")
    check.check("Bearer old-key")
    keys = tmp_path / "keys"
    replacement = tmp_path / "keys.new"
    replacement.write_text("new-key use_cases=search\n")
    os.replace(replacement, keys)  # how a deployment rotates: write aside, rename over
    with pytest.raises(ApiKeyError):
        check.check("Bearer old-key")
    check.check("Bearer new-key").admit("search", 1)
    keys.write_text("new-key rate=oops\n")
    check.check("Bearer new-key")  # a broken file is logged; the keys loaded before stay
