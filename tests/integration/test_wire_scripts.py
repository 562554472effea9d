"""The wire and the Redis scripts, against a real Redis: each script alone, and each check shown
to fail on a deliberately broken copy (a test that cannot fail proves nothing)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from celery import Celery

from embedq.config.errors import EmbedqError
from embedq.tasks.dead_letters import list_dead
from embedq.tasks.names import (
    backlog_key,
    bulk_queue,
    deliveries_key,
    inflight_key,
    live_key,
    rate_key,
)
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import DEAD_MARK, build_message, message_id, open_envelope
from embedq.worker import claims as claims_module
from embedq.worker.batching import BatchPolicy, PassPolicy
from embedq.worker.claims import QueueClaims
from embedq.worker.replies import Outbox, ReplyTarget

QUEUE = "embed.hashing.fp32"
POLICY = BatchPolicy(claim_texts=64, claim_messages=64, linger_s=0.0, max_deliveries=3,
                     lifo_after_s=0.0, passes=PassPolicy(4096, 32))


def _request(texts: int) -> EmbedRequest:
    return EmbedRequest(texts=[f"text {i}" for i in range(texts)], route="fast",
                        model="hashing", precision="fp32", dim=64, normalize=True,
                        output_dtype="float32")


def _message(texts: int = 1, *, deadline: float | None = None, bulk: bool = False,
             now: float | None = None) -> bytes:
    return build_message(_request(texts), queue=QUEUE, reply_to="embedq:v1:reply:t",
                         origin="test", now=time.time() if now is None else now,
                         deadline=deadline, bulk=bulk)[1]


def _rewritten(raw: bytes, **dumps: object) -> bytes:
    """The same envelope serialised another way (separators, key order, whitespace)."""
    return json.dumps(json.loads(raw), **dumps).encode()  # type: ignore[arg-type]


def _celery_message(broker: redis.Redis, url: str) -> bytes:
    """What a plain Celery producer's ``send_task`` puts on the queue (no embedq headers)."""
    app = Celery("plain", broker=url)
    app.conf.task_serializer = "json"
    app.send_task("embedq.embed", args=[_request(3).to_wire()], queue=QUEUE)
    raw = broker.rpop(QUEUE)
    assert isinstance(raw, bytes)
    return raw


def _envelopes(broker: redis.Redis, url: str) -> list[bytes]:
    raw = _message(5)
    return [
        raw,  # embedq's producer
        _rewritten(raw, separators=(",", ":")),  # compact JSON
        _rewritten(raw, indent=2, sort_keys=True),  # another order, newlines
        _rewritten(raw, separators=(",", ": ")),
        _celery_message(broker, url),  # app.send_task: no texts header
        _message(1),
    ]


def _claim_texts(broker: redis.Redis, lua: str, raws: list[bytes]) -> list[int]:
    """The texts the claim script (``lua``) counts for each envelope, claimed one at a time."""
    counted = []
    for raw in raws:
        broker.flushdb()
        broker.lpush(QUEUE, raw)
        claims = QueueClaims(broker, QUEUE, "agreement")
        claims._claim = broker.register_script(lua)
        (claimed,) = claims.claim(POLICY)
        counted.append(claimed.texts)
    return counted


def _agree(broker: redis.Redis, url: str, lua: str) -> bool:
    raws = _envelopes(broker, url)
    return _claim_texts(broker, lua, raws) == [open_envelope(raw).texts for raw in raws]


def test_the_claim_script_and_the_consumer_count_every_envelope_alike(broker, redis_server):
    raws = _envelopes(broker, redis_server.url)
    assert [open_envelope(raw).texts for raw in raws] == [5, 5, 5, 5, 1, 1]
    assert _agree(broker, redis_server.url, claims_module.CLAIM_LUA)


def test_the_agreement_check_fails_on_a_claim_script_that_reads_headers_by_pattern(
        broker, redis_server):
    """The old way: a pattern over the JSON text, which compact JSON silently defeats."""
    by_pattern = claims_module.CLAIM_LUA.replace(
        "local n = number(h[TEXTS])",
        "local n = tonumber(string.match(h.__raw or '', '\"embedq_texts\": (%d+)'))")
    by_pattern = by_pattern.replace(
        "return envelope.headers", "envelope.headers.__raw = raw; return envelope.headers")
    assert by_pattern != claims_module.CLAIM_LUA
    assert not _agree(broker, redis_server.url, by_pattern)


def _claims(broker: redis.Redis, lua: str | None = None, consumer: str = "c1") -> QueueClaims:
    claims = QueueClaims(broker, QUEUE, consumer)
    if lua is not None:
        claims._claim = broker.register_script(lua)
    return claims


ClaimCheck = Callable[[redis.Redis, str | None], bool]


def _budget_in_texts(broker: redis.Redis, lua: str | None) -> bool:
    """A one-text message first (the script sizes what it reads by it), then 20-text ones: the
    budget of 64 is counted in texts, so the fourth of those is the last one taken."""
    broker.lpush(QUEUE, _message(1), *[_message(20) for _ in range(5)])
    claimed = _claims(broker, lua).claim(POLICY)
    return [c.texts for c in claimed] == [1, 20, 20, 20, 20] and broker.llen(QUEUE) == 1


def _interactive_before_bulk(broker: redis.Redis, lua: str | None) -> bool:
    bulk = _message(30, bulk=True)
    interactive = _message(1)
    broker.lpush(bulk_queue(QUEUE), bulk)
    broker.lpush(QUEUE, interactive)
    claimed = _claims(broker, lua).claim(POLICY)
    return [c.raw for c in claimed] == [interactive, bulk]


def _newest_first_once_the_oldest_waited_too_long(broker: redis.Redis, lua: str | None) -> bool:
    old, new = _message(64, now=time.time() - 5), _message(64)
    broker.lpush(QUEUE, old, new)  # new is at the head, old at the tail (served first in FIFO)
    claimed = _claims(broker, lua).claim(replace(POLICY, lifo_after_s=1.0))
    return [c.raw for c in claimed] == [new] and broker.lrange(QUEUE, 0, -1) == [old]


def _expired_cleared_and_backlog_kept(broker: redis.Redis, lua: str | None) -> bool:
    gone, live = _message(7, deadline=time.time() - 1), _message(3, deadline=time.time() + 60)
    broker.lpush(QUEUE, gone, live)
    broker.set(backlog_key(QUEUE), 10)
    claimed = _claims(broker, lua).claim(POLICY)
    states = [(c.raw, c.state) for c in claimed]
    return (states == [(gone, "expired"), (live, "live")]
            and int(broker.get(backlog_key(QUEUE)) or -1) == 0)


def _poison_marked_dead(broker: redis.Redis, lua: str | None) -> bool:
    """Claimed, and its worker process died with it, four times: the fourth claim (over
    ``max_deliveries`` = 3) puts it in the dead letters (a record `DeadLetter` reads) instead
    of serving it again."""
    raw = _message(1)
    broker.lpush(QUEUE, raw)
    claims = _claims(broker, lua)
    states = []
    for _ in range(4):
        claimed = claims.claim(POLICY)
        if not claimed:  # a suspect is not claimed with others: the blocking wait takes it
            claims.wait(0.1)
            claimed = claims.claim(POLICY)
        states.append(claimed[0].state)
        broker.lmove(claims.inflight, QUEUE, "LEFT", "RIGHT")  # restored after the crash
    records = list_dead(broker, QUEUE, 10)
    return (states == ["live", "live", "live", "dead"]
            and broker.hget(deliveries_key(QUEUE), message_id(raw)) == DEAD_MARK
            and [(r.raw, r.deliveries, r.queue) for r in records] == [(raw, 3, QUEUE)]
            and "worker process dead" in records[0].reason)


def _bulk_suspect_claimed_alone(broker: redis.Redis, lua: str | None) -> bool:
    """A bulk message restored after its worker process died is claimed alone: it must not
    block the bulk list (a blocking wait only ever takes interactive work)."""
    suspect, other = _message(8, bulk=True), _message(8, bulk=True)
    broker.lpush(bulk_queue(QUEUE), suspect, other)  # the suspect at the tail, first in line
    broker.hset(deliveries_key(QUEUE), message_id(suspect), 1)
    claims = _claims(broker, lua)
    first = claims.claim(POLICY)
    broker.delete(claims.inflight)
    second = claims.claim(POLICY)
    return ([c.raw for c in first] == [suspect] and first[0].deliveries == 2
            and [c.raw for c in second] == [other])


CLAIM_CHECKS: dict[str, tuple[ClaimCheck, tuple[str, str]]] = {
    # each check, and a deliberate break of the script that it must catch
    "budget counted in texts": (_budget_in_texts, ("total = total + n", "total = total + 1")),
    "interactive before bulk": (_interactive_before_bulk,
                                ("take(queue, side, oldest and texts(oldest_h))\n"
                                 "from_bulk = 1\ntake(bulk, 'RIGHT', nil)",
                                 "from_bulk = 1\ntake(bulk, 'RIGHT', nil)\nfrom_bulk = 0\n"
                                 "take(queue, side, oldest and texts(oldest_h))")),
    "adaptive LIFO": (_newest_first_once_the_oldest_waited_too_long,
                      ("then side = 'LEFT' end", "then side = 'RIGHT' end")),
    "expired cleared, backlog kept": (_expired_cleared_and_backlog_kept,
                                      ("return deadline ~= nil and deadline <= now",
                                       "return false")),
    "poison dead-lettered": (_poison_marked_dead,
                             ("if n < 0 or n > limit then", "if n < 0 then")),
    "a bulk suspect alone": (_bulk_suspect_claimed_alone,
                             ("and seen and (total > 0 or held > 0) then break end",
                              "and seen then break end")),
}


@pytest.mark.parametrize("name", list(CLAIM_CHECKS))
def test_claim_script(broker, name):
    check, _ = CLAIM_CHECKS[name]
    assert check(broker, None)


@pytest.mark.parametrize("name", list(CLAIM_CHECKS))
def test_claim_script_check_fails_on_a_broken_copy(broker, name):
    check, (good, broken) = CLAIM_CHECKS[name]
    assert good in claims_module.CLAIM_LUA
    assert not check(broker, claims_module.CLAIM_LUA.replace(good, broken))


def _restore(broker: redis.Redis, lua: str | None) -> bool:
    """A dead consumer's bulk message goes back to the bulk list, its interactive one to the
    queue (whose backlog counts it again), and its liveness and rate entries go."""
    dead = "elsewhere:0:1:2-dead"
    bulk, interactive = _message(30, bulk=True), _message(4)
    claims = _claims(broker, None, consumer=dead)
    broker.lpush(claims.inflight, bulk, interactive)
    broker.zadd(live_key(QUEUE), {dead: 0})
    broker.hset(rate_key(QUEUE), dead, "10")
    restorer = _claims(broker, None, consumer="survivor")
    if lua is not None:
        restorer._restore = broker.register_script(lua)
    restored = restorer.restore(dead)
    return (restored == 2 and broker.lrange(bulk_queue(QUEUE), 0, -1) == [bulk]
            and broker.lrange(QUEUE, 0, -1) == [interactive]
            and int(broker.get(backlog_key(QUEUE)) or 0) == 4
            and broker.zcard(live_key(QUEUE)) == 0 and broker.hlen(rate_key(QUEUE)) == 0)


def test_restore_script(broker):
    assert _restore(broker, None)


@pytest.mark.parametrize(("good", "broken"), [
    ("target = KEYS[3]", "target = KEYS[2]"),  # bulk restored onto the interactive queue
    ("redis.call('HDEL', KEYS[7], ARGV[1])", "-- rates kept"),
])
def test_restore_check_fails_on_a_broken_copy(broker, good, broken):
    assert good in claims_module.RESTORE_LUA
    assert not _restore(broker, claims_module.RESTORE_LUA.replace(good, broken))


def _answered(broker: redis.Redis) -> Outbox:
    """One message claimed and answered with an error, its batch's writes not yet committed."""
    broker.lpush(QUEUE, _message())
    claims = QueueClaims(broker, QUEUE, "committer")
    [claimed] = claims.claim(POLICY)
    outbox = Outbox(ReplyTarget(queue=QUEUE, inflight=claims.inflight, hostname="w@test", db=0,
                                reply_ttl_s=60, events=True, celery=None), settles_all=True)
    outbox.fail(open_envelope(claimed.raw), EmbedqError("answered"))
    return outbox


def _left(broker: redis.Redis) -> tuple[int, int, int]:
    """Messages in flight, delivery counts, replies written."""
    return (broker.llen(inflight_key(QUEUE, "committer")), broker.hlen(deliveries_key(QUEUE)),
            broker.llen("embedq:v1:reply:t"))


def test_the_commit_writes_replies_and_acknowledgements_together(broker):
    outbox = _answered(broker)
    assert _left(broker) == (1, 1, 0)
    outbox.commit(broker)
    assert _left(broker) == (0, 0, 1)


def test_a_commit_refused_for_memory_writes_nothing(broker):
    """Out of memory (noeviction) the reply's RPUSH is refused; the acknowledgements after it
    would not be (DEL, HDEL): the script fails whole and the message stays in flight for the
    retry, as a MULTI/EXEC of the same commands would."""
    outbox = _answered(broker)
    broker.config_set("maxmemory-policy", "noeviction")
    broker.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            outbox.commit(broker)
        assert _left(broker) == (1, 1, 0)
    finally:
        broker.config_set("maxmemory", 0)
    outbox.commit(broker)  # the consumer's retry, once the broker takes writes again
    assert _left(broker) == (0, 0, 1)


def test_header_names_live_in_the_wire_module_only():
    """No second copy of a header name: the Lua scripts receive them as arguments."""
    root = Path(claims_module.__file__).resolve().parents[1]
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.lua"], cwd=root, check=True,
                             capture_output=True, text=True).stdout.split()
    pattern = re.compile(r'"embedq_(texts|deadline|reply|enqueued_at)"|embedq_texts\b')
    found = [name for name in tracked if not name.startswith("tests/")
             and name != "tasks/wire.py"
             and pattern.search((root / name).read_text(errors="replace"))]
    assert found == []
