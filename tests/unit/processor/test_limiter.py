"""AsyncBudget: a per-allocation concurrency limit with FIFO waiters and deadline timeouts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from streamproc.processor.limiter import AsyncBudget
from tests.unit.processor.fakes import eventually, settle


async def _enqueue(budget: AsyncBudget, timeout_s: float | None = None) -> asyncio.Task[bool]:
    """Start an acquire and return once it is queued behind the current holders."""
    before = budget.waiting
    task = asyncio.create_task(budget.acquire(timeout_s))
    await eventually(lambda: budget.waiting == before + 1 or task.done(), "the waiter to queue")
    return task


def _waiting(budget: AsyncBudget, count: int) -> Callable[[], bool]:
    return lambda: budget.waiting == count


async def _spin_until(condition: Callable[[], bool], rounds: int = 200) -> None:
    """Run other tasks until ``condition`` holds, without timers (the loop clock is frozen)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_never_more_than_limit_holders_under_contention() -> None:
    """Many concurrent acquirers never hold more than ``limit`` slots at once, and all finish."""
    budget = AsyncBudget("fraud", 3)
    holding = 0
    most = 0
    rng = random.Random(7)

    async def worker() -> None:
        nonlocal holding, most
        for _ in range(5):
            assert await budget.acquire(None)
            holding += 1
            most = max(most, holding)
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            holding -= 1
            budget.release()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(40))), 5)
    assert most == 3
    assert budget.high_water_mark == 3
    assert (budget.in_flight, budget.waiting) == (0, 0)


async def test_waiters_are_served_in_arrival_order() -> None:
    """Waiters get slots in the order they started waiting (no event starves)."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    served: list[int] = []

    async def waiter(i: int) -> None:
        assert await budget.acquire(None)
        served.append(i)
        await asyncio.sleep(0)
        budget.release()

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(waiter(i)))
        await eventually(_waiting(budget, i + 1), f"waiter {i} to queue")
    budget.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 3)
    assert served == list(range(8))


async def test_a_newcomer_does_not_jump_the_queue() -> None:
    """A slot released while others wait goes to the first waiter, not to a new caller."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    first = await _enqueue(budget)
    budget.release()  # handed to ``first``, which has not run yet
    assert not await budget.acquire(0)
    assert await asyncio.wait_for(first, 1)
    assert budget.in_flight == 1


async def test_a_timed_out_waiter_does_not_leak_a_slot() -> None:
    """A waiter that gives up returns False, takes nothing, and leaves the queue."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    assert not await budget.acquire(0.01)
    assert not await budget.acquire(0)
    assert (budget.in_flight, budget.waiting) == (1, 0)
    budget.release()
    assert budget.in_flight == 0
    assert await budget.acquire(0)


@pytest.mark.parametrize("release_first", [False, True], ids=["timeout-first", "release-first"])
async def test_a_slot_handed_over_exactly_at_timeout_is_not_lost(release_first: bool) -> None:
    """A slot arriving as the waiter times out ends with exactly one holder, never lost."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    loop = asyncio.get_running_loop()
    real_time = loop.time
    now = [real_time()]
    start = now[0]
    # Drive the loop clock by hand: the waiter's timeout and the release become due in the
    # same loop iteration, in the order under test, before the waiter runs again.
    loop.time = lambda: now[0]  # type: ignore[method-assign]
    try:
        racing = asyncio.create_task(budget.acquire(0.01))
        await _spin_until(lambda: budget.waiting == 1)
        patient = asyncio.create_task(budget.acquire(None))
        await _spin_until(lambda: budget.waiting == 2)
        loop.call_at(start + 0.01 + (-1e-6 if release_first else 1e-6), budget.release)
        now[0] = start + 0.02
        await _spin_until(lambda: racing.done() and (patient.done() or racing.result()))
    finally:
        loop.time = real_time  # type: ignore[method-assign]
    if not release_first:
        assert racing.result() is False  # it had given up: the slot went to the next waiter
    assert racing.result() is not patient.done()
    assert budget.in_flight == 1
    if racing.result():
        budget.release()
        assert await asyncio.wait_for(patient, 1)
    assert (budget.in_flight, budget.waiting) == (1, 0)


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    """Cancelling a queued acquire removes it; later releases serve the others."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    cancelled = await _enqueue(budget)
    patient = await _enqueue(budget)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert budget.waiting == 1
    budget.release()
    assert await asyncio.wait_for(patient, 1)
    assert budget.in_flight == 1
    budget.release()
    assert budget.in_flight == 0


async def test_a_slot_handed_to_a_waiter_being_cancelled_is_passed_on() -> None:
    """Release and cancel in the same instant: the cancelled waiter passes the slot on."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    cancelled = await _enqueue(budget)
    patient = await _enqueue(budget)
    budget.release()  # hands the slot to ``cancelled``...
    cancelled.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await asyncio.wait_for(patient, 1)
    assert (budget.in_flight, budget.waiting) == (1, 0)


async def test_growing_the_limit_wakes_waiters() -> None:
    """set_limit to a larger budget serves queued waiters at once, in order."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    waiters = [await _enqueue(budget) for _ in range(3)]
    budget.set_limit(3)
    await settle()
    assert [w.done() for w in waiters] == [True, True, False]
    assert budget.in_flight == 3
    budget.set_limit(4)
    assert await asyncio.wait_for(waiters[2], 1)
    assert budget.limit == 4


async def test_shrinking_the_limit_keeps_running_work_and_admits_below_it() -> None:
    """After set_limit shrinks the budget, nobody is revoked and waiters wait until below it."""
    budget = AsyncBudget("fraud", 3)
    for _ in range(3):
        assert await budget.acquire(None)
    budget.set_limit(1)
    waiter = await _enqueue(budget)
    budget.release()
    budget.release()
    await settle()
    assert not waiter.done()
    assert budget.in_flight == 1
    budget.release()
    assert await asyncio.wait_for(waiter, 1)
    assert budget.in_flight == 1
    assert not await budget.acquire(0)


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_a_cancellation_inside_acquire_is_never_swallowed(steps: int) -> None:
    """A waiter cancelled inside acquire raises and passes its slot on (3.11 wait_for did not)."""
    budget = AsyncBudget("fraud", 1)
    assert await budget.acquire(None)
    waiter = await _enqueue(budget, timeout_s=10)
    patient = await _enqueue(budget)
    budget.release()  # hands the slot to ``waiter``...
    for _ in range(steps):
        await asyncio.sleep(0)  # ...which is on its way to it...
    if waiter.cancel():  # ...when its event is abandoned, before acquire returned
        with pytest.raises(asyncio.CancelledError):
            await waiter
    else:  # acquire had returned: the slot is the caller's, to release as usual
        assert waiter.result() is True
        budget.release()
    assert await asyncio.wait_for(patient, 1)
    assert (budget.in_flight, budget.waiting) == (1, 0)
