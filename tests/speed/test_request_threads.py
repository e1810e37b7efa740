"""The request threads of a process (``vantage6.handler.RequestThreads``) keep an executor's promises: every
call answered, at most the given number at once, failures to the caller, a cancelled call not made; and
the shares of them (``Shares``): an identity over its share waits, in order, and no other identity with it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref

import pytest

from vantage6.handler import NEWCOMER_THREADS, RequestThreads, Shares


def run(coroutine):
    return asyncio.new_event_loop().run_until_complete(coroutine)


async def in_threads(threads: RequestThreads, func, *args):
    future = asyncio.get_running_loop().create_future()
    threads.submit(future, func, *args)
    return await future


def test_calls_beyond_the_threads_wait_and_are_all_answered():
    threads = RequestThreads(2)
    running, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def work(number: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1
        return number * 2

    async def main():
        calls = [asyncio.ensure_future(in_threads(threads, work, n)) for n in range(6)]
        await asyncio.sleep(0.1)
        release.set()
        return await asyncio.gather(*calls)

    try:
        assert run(main()) == [0, 2, 4, 6, 8, 10]
    finally:
        threads.shutdown()
    assert most[0] == 2
    assert len(threads._threads) == 2


def test_one_idle_thread_serves_calls_one_after_another():
    threads = RequestThreads(8)

    async def main():
        return [await in_threads(threads, threading.get_ident) for _ in range(20)]

    try:
        assert len(set(run(main()))) == 1
    finally:
        threads.shutdown()


def test_a_failure_reaches_the_caller_and_the_thread_serves_on():
    threads = RequestThreads(1)

    def fail() -> None:
        raise KeyError("lost")

    async def main():
        with pytest.raises(KeyError, match="lost"):
            await in_threads(threads, fail)
        return await in_threads(threads, lambda: "next")

    try:
        assert run(main()) == "next"
    finally:
        threads.shutdown()


def test_a_call_cancelled_before_a_thread_takes_it_is_not_made():
    threads = RequestThreads(1)
    busy, made = threading.Event(), []

    async def main():
        first = asyncio.ensure_future(in_threads(threads, busy.wait, 5))
        second = asyncio.ensure_future(in_threads(threads, made.append, "made"))
        await asyncio.sleep(0.05)
        second.cancel()
        await asyncio.sleep(0)
        busy.set()
        assert await first is True
        return await in_threads(threads, lambda: "after")

    try:
        assert run(main()) == "after"
    finally:
        threads.shutdown()
    assert made == []


def test_an_idle_thread_keeps_nothing_of_its_last_call():
    class Body:
        pass

    threads = RequestThreads(1)

    async def main():
        body = Body()
        kept = weakref.ref(body)
        await in_threads(threads, id, body)
        return kept

    try:
        kept = run(main())
        deadline = time.monotonic() + 2
        while kept() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert kept() is None
    finally:
        threads.shutdown()


def test_no_calls_after_shutdown():
    threads = RequestThreads(1)
    threads.shutdown()

    async def main():
        await in_threads(threads, lambda: None)

    with pytest.raises(RuntimeError):
        run(main())


@contextlib.contextmanager
def no_new_threads():
    """The system gives no thread (as at its limit of threads or memory): a stack no one can map."""
    threading.stack_size(2**40)
    try:
        yield
    finally:
        threading.stack_size(0)


def test_a_thread_the_system_refuses_leaves_the_call_to_the_running_ones():
    threads = RequestThreads(4)
    release = threading.Event()

    async def main():
        first = asyncio.ensure_future(in_threads(threads, release.wait, 5))
        await asyncio.sleep(0.05)  # the first thread is busy with it
        with no_new_threads():
            second = asyncio.ensure_future(in_threads(threads, lambda: "second"))
            await asyncio.sleep(0)  # submitted while no thread can start
        release.set()
        return await asyncio.gather(first, second)

    try:
        assert run(main()) == [True, "second"]
        assert all(thread.is_alive() for thread in threads._threads)
        assert len(threads._threads) == 1
    finally:
        threads.shutdown()


def test_a_call_refused_for_want_of_a_thread_is_never_made():
    """The caller learns that its call failed: it must not run later all the same (a client retrying
    its write would then make it twice)."""
    threads = RequestThreads(4)
    made = []

    async def main():
        with no_new_threads(), pytest.raises(RuntimeError):
            await in_threads(threads, made.append, "refused")
        return await in_threads(threads, made.append, "later")

    try:
        run(main())
    finally:
        threads.shutdown()
    assert made == ["later"]


def test_an_identity_over_its_share_waits_in_order_while_another_goes_first():
    shares = Shares(2)
    order: list[str] = []

    async def request(identity: str, name: str, hold: asyncio.Event) -> None:
        await shares.take(identity)
        order.append(name)
        try:
            await hold.wait()
        finally:
            shares.give_back(identity)

    async def main():
        hold, free = asyncio.Event(), asyncio.Event()
        free.set()
        flood = [asyncio.ensure_future(request("a", f"a{n}", hold)) for n in range(5)]
        await asyncio.sleep(0)
        other = asyncio.ensure_future(request("b", "b", free))
        await asyncio.sleep(0.01)
        assert order == ["a0", "a1", "b"]  # a's others wait; b does not wait behind them
        hold.set()
        await asyncio.gather(*flood, other)

    run(main())
    assert order == ["a0", "a1", "b", "a2", "a3", "a4"]
    assert shares._held == {} and shares._waiting == {}


def test_a_waiting_request_cancelled_passes_its_turn_on():
    shares = Shares(1)

    async def main():
        await shares.take("a")
        cancelled = asyncio.ensure_future(shares.take("a"))
        waiting = asyncio.ensure_future(shares.take("a"))
        await asyncio.sleep(0)
        cancelled.cancel()
        shares.give_back("a")  # the first request ends: the next one still waiting goes
        await asyncio.wait_for(waiting, 1)
        # Given its turn, then cancelled before it ran: the turn is given back, not lost.
        given = asyncio.ensure_future(shares.take("a"))
        await asyncio.sleep(0)
        shares.give_back("a")
        given.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await given
        await asyncio.wait_for(shares.take("a"), 1)
        shares.give_back("a")

    run(main())
    assert shares._held == {} and shares._waiting == {}


def test_the_share_shrinks_while_identities_share_the_threads_and_grows_back():
    shares = Shares(16, threads=32)

    async def main():
        for _ in range(16):
            await shares.take("a")  # alone: the whole share
        for _ in range(10):
            await shares.take("b")  # with a: 32 / 3
        over = asyncio.ensure_future(shares.take("b"))
        await asyncio.sleep(0)
        assert not over.done()  # 26 held: 6 left for a third
        await asyncio.wait_for(shares.take("c"), 1)
        shares.give_back("c")
        for _ in range(16):
            shares.give_back("a")
        await asyncio.wait_for(over, 1)  # b alone again: its share grew back
        for _ in range(11):
            shares.give_back("b")

    run(main())
    assert shares._held == {} and shares._waiting == {}


def test_however_many_identities_flood_a_newcomer_takes_a_thread_at_once_or_next():
    shares = Shares(16, threads=32)

    async def main():
        # Ten identities flooding at once: at the floor of 8 each, they would take all 32 threads.
        floods = {n: [] for n in range(10)}
        for _ in range(8):
            for n, calls in floods.items():
                calls.append(asyncio.ensure_future(shares.take(n)))
        await asyncio.sleep(0)
        assert shares._in_use == 32 - NEWCOMER_THREADS
        newcomers = [asyncio.ensure_future(shares.take(f"newcomer {n}")) for n in range(NEWCOMER_THREADS + 1)]
        await asyncio.sleep(0)
        assert [newcomer.done() for newcomer in newcomers] == [True] * NEWCOMER_THREADS + [False]
        # A thread comes free: the newcomer still waiting goes first, not one of the floods' waiting calls.
        holder = next(n for n, calls in floods.items() if calls[0].done())
        shares.give_back(holder)
        await asyncio.wait_for(newcomers[-1], 1)
        for n in range(NEWCOMER_THREADS + 1):
            shares.give_back(f"newcomer {n}")
        while shares._held:  # the floods end, each call letting in the next
            shares.give_back(next(iter(shares._held)))
            await asyncio.sleep(0)
        assert all(call.done() for calls in floods.values() for call in calls)

    run(main())
    assert shares._held == {} and shares._waiting == {} and shares._in_use == 0
