"""Spending budgets: atomic reservations under concurrency, periods, scopes, failover."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import anyio
import pytest
from redis_server import RedisServer

from cascade.errors import CascadeError, ConfigError
from cascade.resilience import (
    BudgetArgumentError,
    BudgetRule,
    Budgets,
    BudgetScope,
    Denied,
    Period,
    Reservation,
    ResilienceConfigError,
    bucket,
)
from cascade.state import FailoverStore, MemoryStore, RedisStore, Store

pytestmark = pytest.mark.anyio

# Hundreds of concurrent calls on a busy 2-core machine keep the event loop late by more than
# the 0.5 s default: these tests are about atomicity, not timeouts.
LOADED = 5.0

FEATURE, CALLER = BudgetScope.FEATURE, BudgetScope.CALLER


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- never exceeded, always reached -----------------------------------------------------------


async def _spend_concurrently(store: Store, seed: int, *, full_cost: bool) -> None:
    """1000 tasks reserve a random worst case at once, hold it a moment and settle a real
    cost <= the reservation (exactly it when ``full_cost``)."""
    limit = 10.0
    rules = [BudgetRule("daily", FEATURE, Period.DAY, usd=limit)]
    budgets = Budgets(rules, store)
    rng = random.Random(seed)
    plans = [(rng.uniform(0.01, 0.2), 1.0 if full_cost else rng.random())
             for _ in range(1000)]  # demand ~ $100
    max_reservation = max(worst for worst, _ in plans)
    settled_total = 0.0
    denied: list[float] = []

    async def run(worst: float, share: float) -> None:
        nonlocal settled_total
        outcome = await budgets.reserve("chat", {}, worst)
        if isinstance(outcome, Denied):
            assert outcome.rule is rules[0]
            assert outcome.remaining_usd is not None and outcome.remaining_usd < worst
            denied.append(worst)
            return
        await anyio.sleep(rng.uniform(0, 0.002))
        await budgets.settle(outcome, worst * share)
        settled_total += worst * share

    async def spent() -> float:
        [(_, left_usd, left_requests)] = await budgets.remaining("chat", {})
        assert left_requests is None and left_usd is not None
        return limit - left_usd

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for worst, share in plans:
                group.start_soon(run, worst, share)
    assert denied and settled_total <= limit + 1e-9  # never exceeded
    assert await spent() == pytest.approx(settled_total, abs=1e-6)  # nothing held or lost
    if full_cost:  # counters only grew: every denial saw less than the final total
        assert settled_total > limit - max_reservation  # reached, within one reservation
        return
    for worst in denied:  # refunds freed room: the budget takes more until it is really full
        outcome = await budgets.reserve("chat", {}, worst)
        if isinstance(outcome, Denied):
            assert limit - await spent() < worst
            break
        await budgets.settle(outcome, worst)
        settled_total += worst
    else:
        pytest.fail("the budget never filled up")
    assert settled_total <= limit + 1e-9


@pytest.mark.parametrize("full_cost", [True, False])
async def test_1000_concurrent_reservations_never_exceed_memory(full_cost: bool) -> None:
    await _spend_concurrently(MemoryStore(), seed=1, full_cost=full_cost)


@pytest.mark.parametrize("full_cost", [True, False])
async def test_1000_concurrent_reservations_never_exceed_redis(
        redis_server: str, full_cost: bool) -> None:
    store = RedisStore(redis_server, prefix=f"b{uuid.uuid4().hex[:8]}:", timeout_s=LOADED)
    try:
        await _spend_concurrently(store, seed=2, full_cost=full_cost)
    finally:
        await store.aclose()


async def test_two_processes_share_one_redis_budget(redis_server: str) -> None:
    prefix = f"two{uuid.uuid4().hex[:6]}:"
    stores = [RedisStore(redis_server, prefix=prefix, timeout_s=LOADED) for _ in range(2)]
    rules = [BudgetRule("r", FEATURE, Period.HOUR, requests=50)]
    budgets = [Budgets(rules, store) for store in stores]
    granted = 0

    async def one(i: int) -> None:
        nonlocal granted
        outcome = await budgets[i % 2].reserve("f", {}, 0.0)
        granted += isinstance(outcome, Reservation)

    try:
        async with anyio.create_task_group() as group:
            for i in range(200):
                group.start_soon(one, i)
        assert granted == 50
    finally:
        for store in stores:
            await store.aclose()


# --- periods ------------------------------------------------------------------------------------


async def test_period_rollover_on_a_fake_clock() -> None:
    clock = Clock(ts(2026, 12, 2, 10, 15, 0) - 0.5)
    budgets = Budgets([BudgetRule("rpm", FEATURE, Period.MINUTE, requests=2)], MemoryStore(),
                      clock=clock)
    assert isinstance(await budgets.reserve("f", {}, 0.0), Reservation)
    assert isinstance(await budgets.reserve("f", {}, 0.0), Reservation)
    denied = await budgets.reserve("f", {}, 0.0)
    assert isinstance(denied, Denied) and denied.remaining_requests == 0
    clock.now += 0.5  # the next minute
    assert isinstance(await budgets.reserve("f", {}, 0.0), Reservation)
    assert (await budgets.remaining("f", {}))[0][2] == 1.0


async def test_month_boundary() -> None:
    clock = Clock(ts(2026, 1, 31, 23, 59, 59))
    budgets = Budgets([BudgetRule("monthly", FEATURE, Period.MONTH, usd=1.0)], MemoryStore(),
                      clock=clock)
    assert isinstance(await budgets.reserve("f", {}, 1.0), Reservation)
    assert isinstance(await budgets.reserve("f", {}, 0.01), Denied)
    clock.now = ts(2026, 2, 1)
    assert isinstance(await budgets.reserve("f", {}, 1.0), Reservation)
    assert bucket(Period.MONTH, ts(2026, 12, 31, 12)) == (ts(2026, 12, 1), ts(2027, 1, 1))
    assert bucket(Period.MONTH, ts(2028, 2, 29, 23, 59)) == (ts(2028, 2, 1), ts(2028, 3, 1))
    assert bucket(Period.DAY, ts(2026, 3, 5, 13, 7)) == (ts(2026, 3, 5), ts(2026, 3, 6))
    assert bucket(Period.HOUR, ts(2026, 3, 5, 13, 7)) == (ts(2026, 3, 5, 13), ts(2026, 3, 5, 14))


async def test_counters_expire_after_their_period() -> None:
    mono = Clock(0.0)
    wall = Clock(ts(2026, 5, 1, 0, 0, 30))
    store = MemoryStore(mono)
    budgets = Budgets([BudgetRule("rpm", FEATURE, Period.MINUTE, requests=5)], store, clock=wall)
    await budgets.reserve("f", {}, 0.0)
    assert len(store._values) == 1
    mono.now = 30 + 3600.0  # the rest of the minute plus the grace hour
    assert store.value(next(iter(store._values))) == 0.0 and not store._values


# --- scopes and kinds ---------------------------------------------------------------------


async def test_caller_scope_counts_each_caller_and_skips_requests_without_one() -> None:
    rule = BudgetRule("per-user", CALLER, Period.DAY, usd=1.0, caller_key="user")
    budgets = Budgets([rule], MemoryStore())
    assert isinstance(await budgets.reserve("f", {"user": "alice"}, 1.0), Reservation)
    denied = await budgets.reserve("f", {"user": "alice"}, 0.5)
    assert isinstance(denied, Denied) and denied.rule is rule and denied.remaining_usd == 0.0
    assert isinstance(await budgets.reserve("f", {"user": "bob"}, 1.0), Reservation)
    assert isinstance(await budgets.reserve("other", {"user": "alice"}, 1.0), Reservation)
    unlimited = await budgets.reserve("f", {"caller": "alice"}, 50.0)  # no "user": rule not applied
    assert isinstance(unlimited, Reservation) and unlimited.adds == ()
    assert await budgets.remaining("f", {}) == []
    assert await budgets.remaining("f", {"user": "bob"}) == [(rule, 0.0, None)]
    assert await budgets.remaining("f", {"user": "carol:x"}) == [(rule, 1.0, None)]


async def test_caller_scope_across_features() -> None:
    rule = BudgetRule("user-total", CALLER, Period.DAY, requests=2, across_features=True)
    budgets = Budgets([rule], MemoryStore())
    assert isinstance(await budgets.reserve("a", {"caller": "alice"}, 0.0), Reservation)
    assert isinstance(await budgets.reserve("b", {"caller": "alice"}, 0.0), Reservation)
    assert isinstance(await budgets.reserve("c", {"caller": "alice"}, 0.0), Denied)


async def test_requests_only_and_usd_only_rules_and_the_first_breaking_rule() -> None:
    by_requests = BudgetRule("rpm", FEATURE, Period.MINUTE, requests=3)
    by_usd = BudgetRule("daily", FEATURE, Period.DAY, usd=0.25)
    budgets = Budgets([by_requests, by_usd], MemoryStore())
    first = await budgets.reserve("f", {}, 0.1)
    assert isinstance(first, Reservation) and len(first.adds) == 2 and first.usd == 0.1
    await budgets.settle(first, 0.05)
    assert await budgets.remaining("f", {}) == [(by_requests, None, 2.0),
                                                 (by_usd, pytest.approx(0.2), None)]
    denied = await budgets.reserve("f", {}, 0.21)
    assert isinstance(denied, Denied) and denied.rule is by_usd
    assert denied.remaining_usd == pytest.approx(0.2) and denied.remaining_requests is None
    assert isinstance(await budgets.reserve("f", {}, 0.0, requests=2), Reservation)
    denied = await budgets.reserve("f", {}, 0.0)
    assert isinstance(denied, Denied) and denied.rule is by_requests
    assert (denied.remaining_usd, denied.remaining_requests) == (None, 0)
    # nothing of a denied reservation was taken
    assert (await budgets.remaining("f", {}))[1][1] == pytest.approx(0.2)


async def test_settle_raises_and_lowers_by_the_difference() -> None:
    rule = BudgetRule("d", FEATURE, Period.DAY, usd=1.0, requests=10)
    budgets = Budgets([rule], MemoryStore())
    reservation = await budgets.reserve("f", {}, 0.3)
    assert isinstance(reservation, Reservation)
    await budgets.settle(reservation, 0.5)  # the real cost was more: counted, not refused
    assert await budgets.remaining("f", {}) == [(rule, pytest.approx(0.5), 9.0)]
    other = await budgets.reserve("f", {}, 0.5)
    assert isinstance(other, Reservation)
    await budgets.settle(other, 0.0)
    assert await budgets.remaining("f", {}) == [(rule, pytest.approx(0.5), 8.0)]


async def test_bad_rules_and_amounts_are_typed_errors() -> None:
    bad: list[tuple[Callable[[], object], str]] = [
        (lambda: BudgetRule("", FEATURE, Period.DAY, usd=1), "name"),
        (lambda: BudgetRule("r", "feature", Period.DAY, usd=1), "scope"),  # type: ignore[arg-type]
        (lambda: BudgetRule("r", FEATURE, "day", usd=1), "period"),  # type: ignore[arg-type]
        (lambda: BudgetRule("r", FEATURE, Period.DAY), "usd"),
        (lambda: BudgetRule("r", FEATURE, Period.DAY, usd=-1), "usd"),
        (lambda: BudgetRule("r", FEATURE, Period.DAY, usd=float("nan")), "usd"),
        (lambda: BudgetRule("r", FEATURE, Period.DAY, requests=1.5),  # type: ignore[arg-type]
         "requests"),
        (lambda: BudgetRule("r", CALLER, Period.DAY, usd=1, caller_key=""), "caller_key"),
        (lambda: Budgets([BudgetRule("r", FEATURE, Period.DAY, usd=1)] * 2, MemoryStore()),
         "rules"),
    ]
    for build, field in bad:
        with pytest.raises(ResilienceConfigError) as info:
            build()
        assert info.value.field == field and isinstance(info.value, ConfigError)
    budgets = Budgets([BudgetRule("r", FEATURE, Period.DAY, usd=1)], MemoryStore())
    for kwargs, field in [({"usd": -0.1}, "usd"), ({"usd": float("inf")}, "usd"),
                          ({"usd": 0.1, "requests": -1}, "requests")]:
        with pytest.raises(BudgetArgumentError) as arg_info:
            await budgets.reserve("f", {}, **kwargs)  # type: ignore[arg-type]
        assert arg_info.value.field == field and isinstance(arg_info.value, CascadeError)
    reservation = await budgets.reserve("f", {}, 0.1)
    with pytest.raises(BudgetArgumentError, match="actual_usd"):
        await budgets.settle(reservation, -1.0)  # type: ignore[arg-type]
    assert BudgetRule("r", CALLER, Period.DAY, usd=5, requests=100).describe() == \
        "r (caller, day, $5.00, 100 requests)"


# --- redis killed mid-test ----------------------------------------------------------------------


async def test_budget_keeps_answering_when_redis_dies_and_resyncs(
        redis_process: RedisServer) -> None:
    mono = Clock(0.0)
    store = FailoverStore(RedisStore(redis_process.url, timeout_s=0.3), retry_s=2.0, clock=mono)
    rule = BudgetRule("daily", FEATURE, Period.DAY, usd=1.0, requests=100)
    budgets = Budgets([rule], store)
    try:
        for _ in range(3):
            reservation = await budgets.reserve("f", {}, 0.1)
            assert isinstance(reservation, Reservation)
            await budgets.settle(reservation, 0.1)
        redis_process.kill()
        with anyio.fail_after(10):
            for _ in range(4):  # runs keep getting answers while redis is gone
                reservation = await budgets.reserve("f", {}, 0.1)
                assert isinstance(reservation, Reservation)
                await budgets.settle(reservation, 0.05)
            assert store.degraded
            [(_, usd_left, requests_left)] = await budgets.remaining("f", {})
            assert usd_left == pytest.approx(0.5) and requests_left == 93.0
        redis_process.restart()  # an empty server on the same port
        mono.now = 2.0
        with anyio.fail_after(10):
            [(_, usd_left, requests_left)] = await budgets.remaining("f", {})
        assert not store.degraded
        # the spending made while it was down is in the shared state again (that made before
        # the crash died with the server: there is no persistence in this test server)
        assert usd_left == pytest.approx(0.8) and requests_left == 96.0
        direct = RedisStore(redis_process.url)
        keys = [a.key for a in reservation.adds]
        assert await direct.get(keys) == (pytest.approx(0.2), 4.0)
        await direct.aclose()
    finally:
        await store.aclose()
