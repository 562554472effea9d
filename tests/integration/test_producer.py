"""The producer: light to import, strict before it enqueues anything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from embedq.config import Settings
from embedq.config.errors import InvalidInputError, InvalidTextError, UnknownUseCaseError
from embedq.producer import EmbeddingClient


def test_import_producer_does_not_import_torch(tmp_path):
    # A Celery project with its own `tasks` module and a Django-style `config` package must
    # still be able to use the producer: embedq claims no generic top-level names.
    (tmp_path / "tasks.py").write_text("MINE = True\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "__init__.py").write_text("MINE = True\n")
    code = textwrap.dedent("""
        import sys
        import embedq.producer, embedq.tasks, embedq.config
        import tasks, config
        assert tasks.MINE and config.MINE
        heavy = [m for m in ("torch", "sentence_transformers", "embedq.worker") if m in sys.modules]
        assert not heavy, heavy
        print("light")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "light"


@pytest.fixture
def offline_client(hashing_config):
    # Port 1: nothing listens. Every test here must fail before any connection is tried.
    return EmbeddingClient(Settings(redis_url="redis://127.0.0.1:1/0", config_dir=hashing_config,
                                    max_text_chars=50))


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        ([], InvalidInputError, "texts is empty"),
        ("one string", InvalidInputError, "wrap a single text as"),
        (None, InvalidInputError, "got a NoneType"),
        (["ok", ""], InvalidTextError, "text #1: is empty"),
        (["ok", None], InvalidTextError, "text #1: is None"),
        (["ok", "fine", 3], InvalidTextError, "text #2: is a int"),
        (["\udcff"], InvalidTextError, "text #0: is not valid UTF-8"),
        (["x" * 51], InvalidTextError, "more than the limit of 50"),
    ],
)
def test_bad_input_is_refused_before_enqueueing(offline_client, texts, error, message):
    with pytest.raises(error, match=message):
        offline_client.submit(texts, "fast")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.embed_many("hello", "fast"), "an iterable of strings"),
        (lambda c: c.embed_many([], "fast"), "texts is empty"),
        (lambda c: c.embed_many(None, "fast"), "got a NoneType"),
        (lambda c: c.embed_many(5, "fast"), "got a int"),
        (lambda c: c.embed_many(["a"], "fast", max_in_flight=-1), "max_in_flight must be a "),
        (lambda c: c.embed_many(["a"], "fast", max_in_flight=0), "max_in_flight must be a "),
        (lambda c: c.embed_many(["a"], "fast", chunk_size=0), "chunk_size must be a positive"),
        (lambda c: c.embed_many(["a"], "fast", chunk_size=-1), "chunk_size must be a positive"),
        (lambda c: c.embed_many(["a"], "fast", chunk_size=2.5), "chunk_size must be a positive"),
        (lambda c: c.embed_many(["a"], "fast", timeout="5"), "timeout must be a positive"),
        (lambda c: c.embed(["a"], "fast", timeout="5"), "timeout must be a positive"),
        (lambda c: c.embed(["a"], "fast", timeout=-1), "timeout must be a positive"),
        (lambda c: c.embed(["a"], "fast", dim=17), "dim 17 is not offered"),
        (lambda c: c.embed(["a"], "fast", dim=True), "dim True is not offered"),
    ],
)
def test_bad_arguments_are_typed_errors_before_anything_is_sent(offline_client, call, message):
    with pytest.raises(InvalidInputError, match=message):
        call(offline_client)


def test_every_bad_item_is_reported(offline_client):
    with pytest.raises(InvalidTextError) as info:
        offline_client.submit(["", "ok", None], "fast")
    assert set(info.value.problems) == {0, 2}


def test_unknown_use_case(offline_client):
    with pytest.raises(UnknownUseCaseError, match="known: fast, half"):
        offline_client.submit(["a"], "serch")


def test_embed_many_names_the_position_in_the_stream(redis_server, hashing_config):
    from tests.support import make_client

    client = make_client(redis_server.url, hashing_config)
    stream = iter(["a"] * 3 + [""])  # the first chunk is enqueued (no worker), the second is bad
    with pytest.raises(InvalidTextError, match="text #3"):
        next(client.embed_many(stream, "fast", chunk_size=3, max_in_flight=2))
