"""Awaiting a job's future from an event loop: answered in batches, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from embedq.producer.loop_wakeups import until_done


def test_many_waiters_answered_from_another_thread_in_batches_all_wake() -> None:
    futures: list[Future[None]] = [Future() for _ in range(2000)]

    def reply_thread() -> None:
        for start in range(0, len(futures), 32):  # as the reply listener does: a batch at once
            for future in futures[start:start + 32]:
                future.set_result(None)

    async def main() -> list[bool]:
        waits = [asyncio.ensure_future(until_done(f, 30)) for f in futures]
        await asyncio.sleep(0)
        thread = threading.Thread(target=reply_thread)
        thread.start()
        done = await asyncio.gather(*waits)
        thread.join()
        return done

    assert asyncio.run(main()) == [True] * len(futures)


def test_the_deadline_returns_false_and_leaves_the_future_alone() -> None:
    future: Future[None] = Future()
    assert asyncio.run(until_done(future, 0.05)) is False
    assert not future.done()
    future.set_result(None)  # a late answer wakes nobody and raises nothing


def test_an_answer_before_the_wait_returns_at_once() -> None:
    future: Future[None] = Future()
    future.set_result(None)
    assert asyncio.run(until_done(future, 0)) is True


def test_cancelling_the_waiting_task_does_not_cancel_the_future() -> None:
    future: Future[None] = Future()

    async def main() -> None:
        waiting = asyncio.ensure_future(until_done(future, 30))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
    assert not future.cancelled()
    future.set_result(None)  # the loop is closed by now: the reply thread must not fail


def test_each_loop_gets_its_own_wakeups() -> None:
    """Two threads, two loops, one reply thread answering both."""
    futures: list[Future[None]] = [Future() for _ in range(200)]
    results: list[list[bool]] = []

    def run_loop(mine: list[Future[None]]) -> None:
        async def main() -> list[bool]:
            return list(await asyncio.gather(*(until_done(f, 30) for f in mine)))
        results.append(asyncio.run(main()))

    loops = [threading.Thread(target=run_loop, args=(futures[i::2],)) for i in range(2)]
    for thread in loops:
        thread.start()
    for future in futures:
        future.set_result(None)
    for thread in loops:
        thread.join(timeout=30)
    assert results == [[True] * 100, [True] * 100]
