"""`embedq acl` rules as text: each role's keys come from the route table and names.py, glob
characters in names are escaped, passwords appear only as digests, and the producer id makes
the reply-list prefix (the server-side checks are in tests/integration/test_acl.py)."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

from embedq.cli.acl_command import acl
from embedq.config.registry import load_registry
from embedq.ops.acl import acl_users, literal
from embedq.ops.acl_setup import passwords_for
from embedq.tasks.names import reply_key
from embedq.tasks.producer_id import producer_reply_name, reply_pattern
from tests.support import HASHING_MODEL, write_config


@pytest.fixture
def registry(tmp_path):
    return load_registry(write_config(
        tmp_path / "config", {"hashing": HASHING_MODEL, "other": HASHING_MODEL},
        {"fast": {"model": "hashing"}, "other": {"model": "other"}}, default="fast"))


def test_a_producer_reaches_only_its_use_cases_and_its_own_replies(registry):
    web, *_ = acl_users(registry, {"web": ["fast"]})
    rules = " ".join(web.rules)
    assert web.name == "embedq-producer-web"
    assert "%W~embed.hashing.fp32" in rules
    assert "embed.other.fp32" not in rules
    assert f"~{reply_key('web:')}*" in rules
    assert "-@dangerous" in rules
    assert "+@all" not in rules
    # Queue reads live in a selector of read commands: the root's LPOP cannot reach a queue.
    assert "(+llen +lindex +lpos" in rules
    assert "%R~embed.hashing.fp32" in rules


def test_one_worker_user_per_queue_and_the_read_only_roles(registry):
    users = {user.name: user for user in acl_users(registry, {})}
    assert set(users) == {"embedq-worker-embed.hashing.fp32", "embedq-worker-embed.other.fp32",
                          "embedq-dashboard", "embedq-flower", "embedq-dead-letters"}
    worker = " ".join(users["embedq-worker-embed.hashing.fp32"].rules)
    assert "~embed.hashing.fp32 " in worker
    assert "embed.other" not in worker
    assert f"%W~{reply_key('')}*" in worker  # writes any producer's replies, reads none
    dashboard = users["embedq-dashboard"].rules
    assert all(not rule.startswith("~") for rule in dashboard)  # read-only key patterns only
    assert not any(rule in ("+@write", "+set", "+lpush", "+del") for rule in dashboard)


def test_passwords_are_kept_in_their_file_and_printed_only_as_digests(registry, tmp_path):
    users = acl_users(registry, {"web": None})
    path = tmp_path / "passwords"
    first = passwords_for(path, users)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert passwords_for(path, users) == first  # a second run keeps them
    line = users[0].line(first[users[0].name])
    assert first[users[0].name] not in line
    assert f"#{hashlib.sha256(first[users[0].name].encode()).hexdigest()}" in line
    result = CliRunner().invoke(acl, ["--producer", "web", "--passwords", str(path)],
                                env={"EMBEDQ_CONFIG_DIR": str(tmp_path / "config")})
    assert result.exit_code == 0, result.output
    assert "ACL SETUSER embedq-producer-web " in result.output
    assert not any(password in result.output for password in first.values())


def test_names_with_glob_characters_match_only_themselves():
    assert literal("a*b?[c]") == r"a\*b\?\[c\]"


def test_the_producer_id_prefixes_its_reply_lists():
    name = producer_reply_name("web")
    assert name.startswith("web:")
    assert reply_key(name).startswith(reply_pattern("web")[:-1])
    assert ":" not in producer_reply_name(None)
