"""The call seam through the engine, on scripted providers and fake time: failover between
deployments, retries (Retry-After, backoff, retry budget, deadline), the error rules, circuit
breakers, bulkheads, hedging, budgets, cancellation, and the check timeout."""

from __future__ import annotations

import math

import anyio
import pytest
from scripted import FakeTime, Fixed, Flaky, Scripted

from cascade import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    Cascade,
    ContextLengthExceededError,
    Decision,
    NoAnswerError,
    OverloadedError,
    ProviderUnreachableError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
    StopReason,
    Tier,
)
from cascade.policy import (
    BreakerSpec,
    BudgetSpec,
    BulkheadSpec,
    HedgeSpec,
    OnBudgetExhausted,
    OnUnavailable,
    Price,
    ResilienceSpec,
    RetrySpec,
)
from cascade.resilience import BreakerState, Deployment, Resilience
from cascade.types import CallOutcome, CallPurpose

pytestmark = pytest.mark.anyio

CHEAP = Price(input_per_1m=1.0, output_per_1m=2.0)
DEAR = Price(input_per_1m=10.0, output_per_1m=30.0)


def resilience(time: FakeTime, **spec: object) -> Resilience:
    return Resilience(ResilienceSpec(**spec), clock=time, wall_clock=time, sleep=time.sleep)  # type: ignore[arg-type]


def tiers(first: list[Flaky], second: Scripted | None = None, **kw: object) -> list[Tier]:
    deployments = tuple(Deployment(p) for p in first) if len(first) > 1 else ()
    out = [Tier("small", "small-model", first[0], None, None, CHEAP, deployments=deployments,
                **kw)]  # type: ignore[arg-type]
    if second is not None:
        out.append(Tier("large", "large-model", second, None, None, DEAR))
    return out


async def test_a_failing_deployment_fails_over_to_the_next_without_a_retry() -> None:
    time = FakeTime()
    a = Flaky("from a", name="a", script=[ServerError("scripted@a", 500, "boom")])
    b = Flaky("from b", name="b")
    engine = Cascade(tiers([a, b], load_balancing=_order()), resilience=resilience(time))
    result = await engine.run("q")
    assert result.answer == "from b" and result.accepted
    [attempt] = result.attempts
    assert attempt.deployment == "scripted@b"
    assert [(c.deployment, c.outcome, c.retry) for c in attempt.calls] == [
        ("scripted@a", CallOutcome.ERROR, 0), ("scripted@b", CallOutcome.OK, 0)]
    assert attempt.retries == 0 and time.slept == []


def _order():  # noqa: ANN202 - least in flight keeps the policy's order when all are idle
    from cascade.policy import LoadBalancing

    return LoadBalancing.LEAST_IN_FLIGHT


async def test_a_429_is_retried_no_sooner_than_retry_after_and_the_dear_tier_is_not_paid() -> None:
    time = FakeTime()
    small = Flaky("cheap", name="a", script=[RateLimitedError("scripted@a", 429, "slow down",
                                                             retry_after_s=1.0)])
    large = Scripted("dear", name="b")
    engine = Cascade(tiers([small], large), resilience=resilience(time))
    result = await engine.run("q")
    assert result.answer == "cheap" and result.tier == 0
    assert large.calls == []
    [attempt] = result.attempts
    assert [c.outcome for c in attempt.calls] == [CallOutcome.ERROR, CallOutcome.OK]
    assert attempt.calls[1].retry == 1 and attempt.calls[1].wait_s >= 1.0
    assert time.slept and time.slept[0] >= 1.0 and attempt.retries == 1


async def test_backoff_grows_with_full_jitter_and_stops_at_max_attempts() -> None:
    time = FakeTime()
    fail = [OverloadedError("scripted@a", 529, "overloaded")] * 5
    small = Flaky("cheap", name="a", script=list(fail))
    engine = Cascade(tiers([small], Scripted("dear", name="b")),
                     resilience=resilience(time, retry=RetrySpec(max_attempts=3,
                                                                 initial_backoff_s=1.0,
                                                                 max_backoff_s=4.0,
                                                                 budget_min_retries=10)))
    result = await engine.run("q")
    assert result.answer == "dear" and result.tier == 1
    first = result.attempts[0]
    assert first.decision is Decision.ERROR and "OverloadedError" in (first.error or "")
    assert len(small.calls) == 3 and first.retries == 2
    assert len(time.slept) == 2 and all(0.0 <= s <= 4.0 for s in time.slept)


@pytest.mark.parametrize("error", [
    BadRequestError("scripted@a", 400, "bad"),
    QuotaExhaustedError("scripted@a", 429, "you exceeded your current quota"),
    ContextLengthExceededError("scripted@a", 400, "maximum context length is 8 tokens"),
])
async def test_errors_that_are_never_retried_escalate_at_once(error: Exception) -> None:
    time = FakeTime()
    small = Flaky("cheap", name="a", script=[error])
    engine = Cascade(tiers([small], Scripted("dear", name="b")), resilience=resilience(time))
    result = await engine.run("q")
    assert result.answer == "dear" and len(small.calls) == 1 and time.slept == []
    assert result.attempts[0].retries == 0
    assert type(error).__name__ in (result.attempts[0].error or "")


async def test_retry_budget_caps_retries_so_an_outage_is_not_amplified() -> None:
    time = FakeTime()
    spec = RetrySpec(max_attempts=5, budget_ratio=0.0, budget_min_retries=0)
    small = Flaky("cheap", name="a", script=[ServerError("scripted@a", 503, "x")] * 10)
    engine = Cascade(tiers([small], Scripted("dear", name="b")),
                     resilience=resilience(time, retry=spec))
    result = await engine.run("q")
    assert result.tier == 1 and len(small.calls) == 1  # no retry allowed


async def test_a_retry_that_cannot_finish_before_the_deadline_is_not_started() -> None:
    time = FakeTime()
    small = Flaky("cheap", name="a", script=[RateLimitedError("scripted@a", 429, "slow",
                                                             retry_after_s=30.0)])
    engine = Cascade(tiers([small], Scripted("dear", name="b")), resilience=resilience(time),
                     deadline_s=5.0)
    result = await engine.run("q")
    assert result.answer == "dear" and len(small.calls) == 1 and time.slept == []


async def test_authentication_takes_the_deployment_out_and_health_says_so() -> None:
    time = FakeTime()
    a = Flaky("from a", name="a", script=[AuthenticationError("scripted@a", 401, "bad key")])
    b = Flaky("from b", name="b")
    engine = Cascade(tiers([a, b], load_balancing=_order()), resilience=resilience(time))
    assert (await engine.run("q")).answer == "from b"
    second = await engine.run("q")
    assert second.answer == "from b" and len(a.calls) == 1  # never called again
    assert [c.outcome for c in second.attempts[0].calls][0] is CallOutcome.SKIPPED
    health = {h.deployment: h for h in engine.health()}
    assert health["scripted@a"].state is BreakerState.FORCED_OPEN
    assert health["scripted@b"].state is BreakerState.CLOSED


async def test_a_dead_deployment_is_not_called_while_its_breaker_is_open() -> None:
    time = FakeTime()
    breaker = BreakerSpec(minimum_calls=3, window_size=5, failure_rate=0.5, open_s=30.0)
    dead = Flaky("x", name="a", script=[ProviderUnreachableError("scripted@a", "refused")] * 100)
    large = Scripted("dear", name="b")
    engine = Cascade(tiers([dead], large),
                     resilience=resilience(time, breaker=breaker,
                                           retry=RetrySpec(max_attempts=1)))
    for _ in range(3):
        await engine.run("q")
    assert len(dead.calls) == 3
    result = await engine.run("q")  # the breaker is open: no call reaches the dead upstream
    assert len(dead.calls) == 3 and result.answer == "dear"
    assert result.attempts[0].calls[0].outcome is CallOutcome.SKIPPED
    assert "BreakerOpenError" in (result.attempts[0].error or "")
    time.now += 31.0  # half-open: one probe goes through
    dead.script.clear()
    probe = await engine.run("q")
    assert probe.answer == "x" and len(dead.calls) == 4  # the probe reached the upstream
    assert {h.deployment: h.state for h in engine.health()}["scripted@a"] in (
        BreakerState.HALF_OPEN, BreakerState.CLOSED)


async def test_when_every_breaker_is_open_the_run_waits_for_the_soonest_if_the_deadline_allows() -> None:
    time = FakeTime()
    res = resilience(time, breaker=BreakerSpec(minimum_calls=1, window_size=1, open_s=2.0))
    a = Flaky("recovered", name="a")
    engine = Cascade(tiers([a]), resilience=res, deadline_s=10.0)
    res.breakers.get(res.state(a).key).trip(time.now + 2.0, "scripted cooldown")
    result = await engine.run("q")
    assert result.answer == "recovered"
    assert time.slept and 1.9 <= time.slept[-1] <= 2.0
    # the same with a deadline shorter than the cooldown: no wait, no answer
    res.breakers.get(res.state(a).key).trip(time.now + 60.0, "scripted cooldown")
    with pytest.raises(NoAnswerError) as info:
        await engine.run("q", deadline_s=5.0)
    assert "BreakerOpenError" in (info.value.attempts[0].error or "")


async def test_on_unavailable_best_so_far_stops_instead_of_paying_for_the_next_tier() -> None:
    time = FakeTime()
    small = Scripted("cheap", name="a")
    middle = Flaky("m", name="m", script=[ServerError("scripted@m", 500, "x")] * 5)
    large = Scripted("dear", name="b")
    ts = [Tier("small", "s", small, Fixed(0.1), 0.5, CHEAP),
          Tier("mid", "m", middle, Fixed(0.9), 0.5, CHEAP, on_unavailable=OnUnavailable.BEST_SO_FAR),
          Tier("large", "l", large, None, None, DEAR)]
    engine = Cascade(ts, resilience=resilience(time, retry=RetrySpec(max_attempts=1)))
    result = await engine.run("q")
    assert result.answer == "cheap" and not result.accepted
    assert result.stop_reason is StopReason.UNAVAILABLE and large.calls == []


async def test_a_full_bulkhead_sheds_load_to_the_next_tier() -> None:
    slow = Scripted("cheap", name="a", delay=0.3)
    large = Scripted("dear", name="b")
    res = Resilience(ResilienceSpec(bulkhead=BulkheadSpec(max_in_flight=1, max_queue=0)))
    engine = Cascade(tiers([slow], large), resilience=res)  # type: ignore[list-item]
    results = []

    async def one() -> None:
        results.append(await engine.run("q"))

    async with anyio.create_task_group() as group:
        group.start_soon(one)
        await anyio.sleep(0.05)
        group.start_soon(one)
    answers = sorted(r.answer for r in results)
    assert answers == ["cheap", "dear"]
    shed = next(r for r in results if r.answer == "dear")
    assert shed.attempts[0].calls[0].outcome is CallOutcome.SHED
    assert "BulkheadFullError" in (shed.attempts[0].error or "")


async def test_queued_callers_wait_within_the_bulkhead() -> None:
    slow = Scripted("cheap", name="a", delay=0.05)
    res = Resilience(ResilienceSpec(bulkhead=BulkheadSpec(max_in_flight=2, max_queue=100)))
    engine = Cascade(tiers([slow]), resilience=res)  # type: ignore[list-item]
    peak = 0

    async def one() -> None:
        await engine.run("q")

    async def watch() -> None:
        nonlocal peak
        for _ in range(40):
            peak = max(peak, res.state(slow).bulkhead.in_flight)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        for _ in range(10):
            group.start_soon(one)
    assert len(slow.calls) == 10 and peak == 2
    assert res.state(slow).bulkhead.in_flight == 0 and res.state(slow).bulkhead.waiting == 0


@pytest.mark.parametrize("strategy", ["least_in_flight", "lowest_latency"])
async def test_hedging_takes_the_first_answer_and_counts_both_costs(strategy: str) -> None:
    """The hedge goes to another deployment even when the strategy ranks the primary's first
    (lowest latency ignores calls in flight)."""
    from cascade.policy import LoadBalancing

    slow = Scripted("slow", name="a", delay=2.0)
    fast = Scripted("fast", name="b", delay=0.01)
    ts = [Tier("small", "s", slow, None, None, CHEAP,
               deployments=(Deployment(slow), Deployment(fast)),
               load_balancing=LoadBalancing(strategy), hedge=HedgeSpec(after_s=0.05))]
    engine = Cascade(ts)
    with anyio.fail_after(1.5):
        result = await engine.run("a question")
    assert result.answer == "fast"
    calls = result.attempts[0].calls
    assert {(c.deployment, c.outcome, c.hedge) for c in calls} == {
        ("scripted@a", CallOutcome.CANCELLED, False), ("scripted@b", CallOutcome.OK, True)}
    cancelled = next(c for c in calls if c.outcome is CallOutcome.CANCELLED)
    assert cancelled.cost > 0  # the loser's prompt is charged
    assert result.cost == pytest.approx(cancelled.cost + (10 * 1.0 + 5 * 2.0) / 1e6)


async def test_cancelling_a_run_leaves_no_slot_or_permit_behind() -> None:
    hang = Scripted("never", name="a", delay=60)
    res = Resilience(ResilienceSpec(breaker=BreakerSpec(minimum_calls=1, window_size=1,
                                                        half_open_calls=1)))
    engine = Cascade(tiers([hang]), resilience=res)  # type: ignore[list-item]
    with anyio.move_on_after(0.1):
        await engine.run("q")
    state = res.state(hang)
    assert state.bulkhead.in_flight == 0 and state.bulkhead.waiting == 0
    assert res.breakers.get(state.key).snapshot().calls == 0  # a cancellation is not a failure
    with pytest.raises(Exception) as info:  # the deadline path records the cut attempt
        await engine.run("q", deadline_s=0.1)
    assert info.type.__name__ == "DeadlineExceededError"
    assert state.bulkhead.in_flight == 0


async def test_check_times_out_instead_of_hanging() -> None:
    hung = Flaky("x", name="a", check_delay=30.0)
    engine = Cascade(tiers([hung]))
    with anyio.fail_after(3):
        with pytest.raises(ProviderUnreachableError, match="within 0.2 s"):
            await engine.check(timeout_s=0.2)


# --- budgets -------------------------------------------------------------------------------------


def budgeted(time: FakeTime, usd: float, on: OnBudgetExhausted) -> Resilience:
    return Resilience(ResilienceSpec(), (BudgetSpec(name="daily", period="day", usd=usd),),
                      on_budget_exhausted=on, clock=time, wall_clock=time, sleep=time.sleep)


async def test_a_budget_is_never_exceeded_by_1000_concurrent_runs() -> None:
    time = FakeTime()
    provider = Scripted("cheap", name="a")
    res = budgeted(time, 0.05, OnBudgetExhausted.BEST_SO_FAR)
    engine = Cascade([Tier("small", "s", provider, None, None, DEAR, max_tokens=16)],
                     resilience=res)
    spent: list[float] = []
    refused = 0

    async def one(i: int) -> None:
        nonlocal refused
        try:
            spent.append((await engine.run(f"question {i}")).cost)
        except BudgetExceededError:
            refused += 1

    async with anyio.create_task_group() as group:
        for i in range(1000):
            group.start_soon(one, i)
    assert math.fsum(spent) <= 0.05
    assert refused > 0 and spent  # the budget ran out, and before that it paid for answers
    per_run = (10 * 10.0 + 5 * 30.0) / 1e6
    assert math.fsum(spent) == pytest.approx(len(spent) * per_run)
    # the reservations were settled: what is left is what the answers did not cost
    [(_, left_usd, _)] = await res.budgets.remaining("default", {})  # type: ignore[union-attr]
    assert left_usd == pytest.approx(0.05 - math.fsum(spent), abs=1e-9)


async def test_budget_exhausted_error_policy_raises_a_typed_error() -> None:
    time = FakeTime()
    engine = Cascade([Tier("small", "s", Scripted("cheap"), None, None, DEAR)],
                     resilience=budgeted(time, 0.0, OnBudgetExhausted.ERROR))
    with pytest.raises(BudgetExceededError) as info:
        await engine.run("q")
    assert info.value.limit == "daily"


async def test_budget_best_so_far_returns_the_cheap_answer_instead_of_escalating() -> None:
    time = FakeTime()
    small = Scripted("cheap", name="a")
    large = Scripted("dear", name="b", input_tokens=100_000)
    ts = [Tier("small", "s", small, Fixed(0.1), 0.5, Price(), max_tokens=10),
          Tier("large", "l", large, None, None, DEAR, max_tokens=100_000)]
    engine = Cascade(ts, resilience=budgeted(time, 0.5, OnBudgetExhausted.BEST_SO_FAR))
    result = await engine.run("q")
    assert result.answer == "cheap" and result.stop_reason is StopReason.BUDGET
    assert large.calls == [] and not result.accepted
    assert result.attempts[1].calls[0].outcome is CallOutcome.DENIED


async def test_every_call_of_a_run_passes_the_seam() -> None:
    """Samples and rater calls are recorded too (one seam for tier, sample, rater)."""
    from verifiers import SelfConsistencyEstimator

    p = Scripted("same", name="a")
    tier = Tier("small", "s", p, SelfConsistencyEstimator(k=3, min_samples=3), 0.5, CHEAP)
    result = await Cascade([tier]).run("q")
    purposes = [c.purpose for c in result.attempts[0].calls]
    assert purposes.count(CallPurpose.TIER) == 1 and purposes.count(CallPurpose.SAMPLE) == 2


@pytest.mark.parametrize(("rule", "answer", "stop"), [
    ("escalate", "dear", StopReason.ACCEPTED),
    ("stop", "cheap", StopReason.CONTENT_FILTERED),
])
async def test_a_content_filter_escalates_or_stops_as_the_policy_says(
        rule: str, answer: str, stop: StopReason) -> None:
    from cascade import ContentFilteredError
    from cascade.policy import OnContentFilter

    small = Scripted("cheap", name="a")
    middle = Flaky("m", name="m", script=[ContentFilteredError("scripted@m", "filtered")])
    large = Scripted("dear", name="b")
    ts = [Tier("small", "s", small, Fixed(0.1), 0.5, CHEAP),
          Tier("mid", "m", middle, Fixed(0.9), 0.5, CHEAP,
               on_content_filter=OnContentFilter(rule)),
          Tier("large", "l", large, None, None, DEAR)]
    result = await Cascade(ts, resilience=resilience(FakeTime())).run("q")
    assert (result.answer, result.stop_reason) == (answer, stop)
    assert len(middle.calls) == 1  # a filter is never retried
