"""Envoy-style retry budget on a fake clock, in memory and on a real redis-server."""

from __future__ import annotations

import uuid

import anyio
import pytest

from cascade.resilience import ResilienceConfigError, RetryBudget
from cascade.state import MemoryStore, RedisStore

pytestmark = pytest.mark.anyio

# Hundreds of concurrent calls on a busy 2-core machine keep the event loop late by more than
# the 0.5 s default: these tests are about atomicity, not timeouts.
LOADED = 5.0


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_min_retries_when_there_is_no_traffic() -> None:
    budget = RetryBudget(MemoryStore(), ratio=0.2, min_retries=3, clock=Clock())
    assert [await budget.try_retry("d") for _ in range(5)] == [True, True, True, False, False]
    assert await budget.usage("d") == (0.0, 3.0)


async def test_a_full_failure_burst_allows_at_most_the_ratio_plus_minimum() -> None:
    clock = Clock()
    budget = RetryBudget(MemoryStore(), ratio=0.2, min_retries=3, window_s=10.0, clock=clock)
    allowed = 0
    for i in range(1000):  # every first attempt fails and asks for a retry
        clock.now += 0.005  # 1000 requests over 5 s, inside one window
        await budget.on_request("d")
        allowed += await budget.try_retry("d")
    assert allowed <= 0.2 * 1000 + 3
    assert allowed >= 0.2 * 1000 - 1  # and the budget is really used
    requests, retries = await budget.usage("d")
    assert (requests, retries) == (1000.0, float(allowed))


async def test_the_window_slides() -> None:
    clock = Clock(1_700_000_000.0)
    budget = RetryBudget(MemoryStore(), ratio=0.5, min_retries=0, window_s=10.0, clock=clock)
    for _ in range(10):
        await budget.on_request("d")
    assert [await budget.try_retry("d") for _ in range(6)] == [True] * 5 + [False]
    clock.now += 9.0  # still inside the 10 one-second buckets
    assert not await budget.try_retry("d")
    clock.now += 1.0  # the burst's bucket has left the window
    assert await budget.usage("d") == (0.0, 0.0)
    assert not await budget.try_retry("d")  # no requests, no minimum: nothing allowed
    await budget.on_request("d")
    await budget.on_request("d")
    assert await budget.try_retry("d") and not await budget.try_retry("d")
    assert await budget.usage("other") == (0.0, 0.0)  # per deployment


async def test_concurrent_retries_from_two_processes_never_pass_the_budget(
        redis_server: str) -> None:
    prefix = f"rb{uuid.uuid4().hex[:6]}:"
    stores = [RedisStore(redis_server, prefix=prefix, timeout_s=LOADED) for _ in range(2)]
    clock = Clock()
    budgets = [RetryBudget(s, ratio=0.2, min_retries=3, clock=clock) for s in stores]
    try:
        for i in range(100):
            await budgets[i % 2].on_request("d")
        allowed = 0

        async def one(i: int) -> None:
            nonlocal allowed
            ok = await budgets[i % 2].try_retry("d")
            allowed += ok

        async with anyio.create_task_group() as group:
            for i in range(300):
                group.start_soon(one, i)
        assert allowed == 20
    finally:
        for store in stores:
            await store.aclose()


def test_bad_settings() -> None:
    store = MemoryStore()
    for kwargs, field in [({"ratio": -0.1}, "ratio"), ({"ratio": float("nan")}, "ratio"),
                          ({"min_retries": -1}, "min_retries"),
                          ({"min_retries": 1.5}, "min_retries"),
                          ({"window_s": 0}, "window_s")]:
        with pytest.raises(ResilienceConfigError) as info:
            RetryBudget(store, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


async def test_bad_deployment_name() -> None:
    with pytest.raises(ResilienceConfigError, match="deployment"):
        await RetryBudget(MemoryStore()).on_request("")
