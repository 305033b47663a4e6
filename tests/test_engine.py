"""Engine semantics on scripted providers: deterministic, no network, fake time."""

from __future__ import annotations

import math

import anyio
import pytest
from scripted import FakeClock, Fixed, Scripted, boom

from cascade import (
    Cascade,
    DeadlineExceededError,
    Decision,
    EmptyPromptError,
    InvalidRequestError,
    Message,
    NoAnswerError,
    PromptTooLongError,
    ProviderHTTPError,
    ProviderUnreachableError,
    StopReason,
    Tier,
)
from cascade.policy import Price

pytestmark = pytest.mark.anyio

CHEAP = Price(input_per_1m=1.0, output_per_1m=2.0)
DEAR = Price(input_per_1m=10.0, output_per_1m=30.0)


def two_tiers(p1: Scripted, p2: Scripted, e1: Fixed, e2: Fixed | None = None,
              **kw: object) -> list[Tier]:
    return [
        Tier("small", "small-model", p1, e1, 0.7, CHEAP, **kw),  # type: ignore[arg-type]
        Tier("large", "large-model", p2, e2, 0.5 if e2 else None, DEAR, **kw),  # type: ignore[arg-type]
    ]


async def test_accepts_at_tier_one_and_never_calls_tier_two() -> None:
    clock = FakeClock()
    p1, p2 = Scripted("cheap", clock=clock, elapse=0.25), Scripted("dear")
    engine = Cascade(two_tiers(p1, p2, Fixed(0.9)), clock=clock)
    result = await engine.run("What is 2+2?")
    assert result.answer == "cheap"
    assert result.accepted and result.stop_reason is StopReason.ACCEPTED
    assert (result.tier, result.tier_name, result.model) == (0, "small", "small-model")
    assert result.escalations == 0
    assert p2.calls == []
    [attempt] = result.attempts
    assert attempt.decision is Decision.ACCEPT
    assert (attempt.confidence, attempt.threshold) == (0.9, 0.7)
    assert (attempt.input_tokens, attempt.output_tokens) == (10, 5)
    assert attempt.cost == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)
    assert attempt.latency_s == pytest.approx(0.25)
    assert attempt.deployment == "scripted@scripted"
    assert result.cost == attempt.cost
    assert len(result.trace_id) == 32


async def test_escalates_when_confidence_is_below_threshold() -> None:
    p1, p2 = Scripted("cheap"), Scripted("dear", input_tokens=20, output_tokens=7)
    engine = Cascade(two_tiers(p1, p2, Fixed(0.69), Fixed(0.95)))
    result = await engine.run("hard question")
    assert result.answer == "dear" and result.accepted
    assert result.tier == 1 and result.escalations == 1
    assert [a.decision for a in result.attempts] == [Decision.ESCALATE, Decision.ACCEPT]
    expected = (10 * 1 + 5 * 2) / 1e6 + (20 * 10 + 7 * 30) / 1e6
    assert result.cost == pytest.approx(expected)


async def test_threshold_is_inclusive() -> None:
    engine = Cascade(two_tiers(Scripted("a"), Scripted("b"), Fixed(0.7)))
    assert (await engine.run("q")).tier == 0


async def test_nothing_accepted_returns_highest_tier_not_accepted() -> None:
    engine = Cascade(two_tiers(Scripted("cheap"), Scripted("dear"), Fixed(0.1), Fixed(0.2)))
    result = await engine.run("q")
    assert result.answer == "dear"
    assert not result.accepted and result.stop_reason is StopReason.EXHAUSTED
    assert result.tier == 1 and result.confidence == 0.2
    assert [a.decision for a in result.attempts] == [Decision.ESCALATE, Decision.REJECT]


async def test_tier_without_estimator_is_accepted_unchecked() -> None:
    engine = Cascade(two_tiers(Scripted("cheap"), Scripted("dear"), Fixed(0.1)))
    result = await engine.run("q")
    assert result.accepted and result.answer == "dear"
    assert result.attempts[-1].confidence is None and result.attempts[-1].estimator is None


async def test_deadline_returns_best_answer_so_far() -> None:
    p1, p2 = Scripted("cheap"), Scripted("dear", delay=30)
    engine = Cascade(two_tiers(p1, p2, Fixed(0.1), Fixed(0.9)), deadline_s=0.2)
    with anyio.fail_after(5):
        result = await engine.run("q")
    assert result.answer == "cheap" and not result.accepted
    assert result.stop_reason is StopReason.DEADLINE
    assert [a.decision for a in result.attempts] == [Decision.ESCALATE, Decision.TIMEOUT]
    assert "deadline" in (result.attempts[1].error or "")


async def test_deadline_during_estimation_keeps_that_tiers_answer() -> None:
    engine = Cascade(two_tiers(Scripted("cheap"), Scripted("dear"), Fixed(0.9, delay=30)),
                     deadline_s=0.2)
    result = await engine.run("q")
    assert result.answer == "cheap" and result.stop_reason is StopReason.DEADLINE
    assert result.attempts[0].decision is Decision.TIMEOUT
    assert result.attempts[0].answer == "cheap"
    assert result.attempts[0].input_tokens == 10


async def test_deadline_before_any_answer_raises_with_attempts() -> None:
    engine = Cascade(two_tiers(Scripted(delay=30), Scripted(), Fixed()), deadline_s=0.1)
    with pytest.raises(DeadlineExceededError) as info:
        await engine.run("q")
    assert [a.decision for a in info.value.attempts] == [Decision.TIMEOUT]


async def test_per_run_deadline_overrides_policy() -> None:
    engine = Cascade(two_tiers(Scripted(delay=30), Scripted(), Fixed()), deadline_s=100)
    with anyio.fail_after(5), pytest.raises(DeadlineExceededError):
        await engine.run("q", deadline_s=0.1)


async def test_estimator_failure_is_low_confidence_and_recorded() -> None:
    engine = Cascade(two_tiers(Scripted("cheap"), Scripted("dear"), Fixed(raises=boom())))
    result = await engine.run("q")
    assert result.answer == "dear"
    first = result.attempts[0]
    assert first.decision is Decision.ESCALATE and first.confidence is None
    assert first.estimator_error == "EstimatorError: scripted failure"


async def test_estimator_bug_never_crashes_the_run() -> None:
    engine = Cascade(two_tiers(Scripted("cheap"), Scripted("dear"), Fixed(raises=KeyError("x"))))
    result = await engine.run("q")
    assert result.answer == "dear" and "KeyError" in (result.attempts[0].estimator_error or "")


async def test_estimator_out_of_range_confidence_is_an_estimator_failure() -> None:
    engine = Cascade(two_tiers(Scripted("cheap"), Scripted("dear"), Fixed(1.5)))
    result = await engine.run("q")
    assert result.tier == 1 and "outside [0, 1]" in (result.attempts[0].estimator_error or "")


async def test_provider_error_escalates_and_is_recorded() -> None:
    failing = Scripted(fail=ProviderHTTPError("scripted@x", 503, "overloaded"))
    engine = Cascade(two_tiers(failing, Scripted("dear"), Fixed(0.9)))
    result = await engine.run("q")
    assert result.answer == "dear" and result.accepted
    first = result.attempts[0]
    assert first.decision is Decision.ERROR
    assert first.error == "ProviderHTTPError: scripted@x: HTTP 503: overloaded"
    assert first.cost == 0 and result.escalations == 0 and result.fallbacks == 1


async def test_tier_timeout_is_a_provider_error() -> None:
    engine = Cascade(two_tiers(Scripted(delay=30), Scripted("dear"), Fixed(0.9), timeout_s=0.1))
    result = await engine.run("q")
    assert result.answer == "dear"
    assert (result.attempts[0].error or "").startswith("ProviderTimeoutError")


async def test_every_tier_failing_raises_no_answer_with_attempts() -> None:
    down = ProviderUnreachableError("scripted@x", "cannot connect")
    engine = Cascade(two_tiers(Scripted(fail=down), Scripted(fail=down), Fixed()))
    with pytest.raises(NoAnswerError) as info:
        await engine.run("q")
    assert [a.decision for a in info.value.attempts] == [Decision.ERROR, Decision.ERROR]


async def test_error_at_last_tier_returns_earlier_answer_not_accepted() -> None:
    down = ProviderUnreachableError("scripted@x", "cannot connect")
    engine = Cascade(two_tiers(Scripted("cheap"), Scripted(fail=down), Fixed(0.1)))
    result = await engine.run("q")
    assert result.answer == "cheap" and not result.accepted and result.tier == 0


@pytest.mark.parametrize("prompt", ["", "   \n", [], [{"role": "system", "content": "hi"}]])
async def test_empty_prompt_is_rejected_before_any_call(prompt: object) -> None:
    p1 = Scripted()
    engine = Cascade(two_tiers(p1, Scripted(), Fixed()))
    with pytest.raises(EmptyPromptError):
        await engine.run(prompt)  # type: ignore[arg-type]
    assert p1.calls == []


@pytest.mark.parametrize("prompt", [42, [{"role": "robot", "content": "x"}], [{"role": "user"}], [7]])
async def test_malformed_prompt_is_a_typed_error(prompt: object) -> None:
    engine = Cascade(two_tiers(Scripted(), Scripted(), Fixed()))
    with pytest.raises(InvalidRequestError):
        await engine.run(prompt)  # type: ignore[arg-type]


async def test_non_string_metadata_is_a_typed_error() -> None:
    engine = Cascade(two_tiers(Scripted(), Scripted(), Fixed()))
    with pytest.raises(InvalidRequestError, match="metadata"):
        await engine.run("q", metadata={"user_tier": 3})  # type: ignore[dict-item]


async def test_prompt_longer_than_every_window_is_rejected_before_any_call() -> None:
    p1, p2 = Scripted(), Scripted()
    engine = Cascade(two_tiers(p1, p2, Fixed(), context_window=200, max_tokens=50))
    with pytest.raises(PromptTooLongError) as info:
        await engine.run("word " * 400)
    assert info.value.largest_window == 200
    assert p1.calls == [] and p2.calls == []


async def test_tier_too_small_for_the_prompt_is_skipped() -> None:
    p1, p2 = Scripted("cheap"), Scripted("dear")
    tiers = [Tier("small", "s", p1, Fixed(0.9), 0.5, context_window=100, max_tokens=20),
             Tier("large", "l", p2, None, None, context_window=10_000)]
    result = await Cascade(tiers).run("word " * 200)
    assert result.answer == "dear" and p1.calls == []
    assert result.attempts[0].decision is Decision.SKIP
    assert result.escalations == 0


async def test_messages_and_system_prompt_reach_the_provider() -> None:
    p1 = Scripted()
    tiers = [Tier("only", "m", p1, None, None, system_prompt="Be brief.", max_tokens=33,
                  stop=("\n",), temperature=0.2)]
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                    Message("user", "and now?")]
    await Cascade(tiers).run(conversation, metadata={"user_tier": "gold"})
    [call] = p1.calls
    assert [m.role for m in call.messages] == ["system", "user", "assistant", "user"]
    assert call.messages[0].content == "Be brief."
    assert (call.max_tokens, call.stop, call.temperature) == (33, ("\n",), 0.2)
    assert call.request is not None and call.request.metadata["user_tier"] == "gold"


async def test_estimator_sees_query_candidate_and_logprobs() -> None:
    from verifiers import TokenLogprobEstimator

    p1 = Scripted("cheap", logprobs=(-0.1, -0.3))
    tiers = [Tier("small", "s", p1, TokenLogprobEstimator(), 0.5), Tier("large", "l", Scripted())]
    result = await Cascade(tiers).run("q")
    assert p1.calls[0].logprobs is True
    assert result.attempts[0].confidence == pytest.approx(0.8187307, rel=1e-6)  # exp(-0.2)
    assert result.attempts[0].details["tokens"] == 2


async def test_sample_helper_draws_k_more_answers_and_counts_their_cost() -> None:
    from verifiers import Estimate, EstimateContext

    class Voter(Fixed):
        async def estimate(self, ctx: EstimateContext) -> Estimate:
            assert ctx.sample is not None
            sampled = await ctx.sample(3)
            agree = sum(c.text == ctx.candidate.text for c in sampled.candidates)
            return Estimate(agree / 3, usage=sampled.usage)

    p1 = Scripted("cheap")
    tiers = [Tier("small", "s", p1, Voter(), 0.5, CHEAP), Tier("large", "l", Scripted())]
    result = await Cascade(tiers).run("q")
    assert result.tier == 0 and result.confidence == 1.0
    assert len(p1.calls) == 4
    assert sorted(c.seed for c in p1.calls[1:]) == [1, 2, 3]
    assert all(c.temperature == 0.7 for c in p1.calls[1:])
    assert result.attempts[0].input_tokens == 40
    assert result.cost == pytest.approx(4 * (10 * 1 + 5 * 2) / 1e6)


async def test_aclose_is_idempotent_and_leaves_the_callers_providers_open() -> None:
    """Providers handed in are the caller's: ``async with`` and ``aclose`` (twice) leave them
    open and usable; the pooled ones a policy builds are closed (test_decision_mutants)."""
    cheap, dear = Scripted("cheap"), Scripted("dear")
    async with Cascade(two_tiers(cheap, dear, Fixed(0.9))) as engine:
        result = await engine.run("q")
    assert result.answer == "cheap" and result.accepted
    await engine.aclose()
    await engine.aclose()
    assert not cheap.closed and not dear.closed and len(cheap.calls) == 1


async def test_concurrent_runs_are_independent() -> None:
    engine = Cascade(two_tiers(Scripted("cheap", delay=0.01), Scripted("dear"), Fixed(0.9)))
    results = []

    async def one(i: int) -> None:
        results.append(await engine.run(f"q{i}"))

    async with anyio.create_task_group() as group:
        for i in range(50):
            group.start_soon(one, i)
    assert len(results) == 50 and all(r.answer == "cheap" for r in results)
    assert len({r.trace_id for r in results}) == 50


def test_runs_started_together_are_cut_in_a_staggered_order_before_their_deadline() -> None:
    from cascade.engine import _UNWIND_S, _cut_at

    assert _cut_at(None, 5) == math.inf
    assert _cut_at(8.0) == pytest.approx(7.75)  # alone: 10 %, at most 250 ms
    assert _cut_at(0.5) == pytest.approx(0.45)
    # the k-th of runs started at once is cut k unwinds earlier than the first
    assert _cut_at(8.0, 1000) == pytest.approx(7.75 - 1000 * _UNWIND_S)
    assert _cut_at(8.0, 1) < _cut_at(8.0, 0)
    assert _cut_at(1.0, 100_000) == pytest.approx(0.75)  # never more than a quarter early


def test_the_margin_grows_by_the_overrun_seen_in_the_last_minute() -> None:
    from cascade.engine import _cut_at, _Overrun

    clock = FakeClock()
    overrun = _Overrun(clock)
    assert overrun.current() == 0.0
    overrun.observe(0.3)
    overrun.observe(0.1)  # a smaller one does not lower it
    assert overrun.current() == 0.3
    assert _cut_at(8.0, 0, overrun.current()) == pytest.approx(8.0 - 0.25 - 0.3)
    clock.advance(61.0)
    assert overrun.current() == 0.0  # the lag is gone: so is the extra margin
    assert _cut_at(1.0, 0, 5.0) == pytest.approx(0.75)  # still at most a quarter early


async def test_a_cut_run_teaches_the_next_runs_its_overrun() -> None:
    engine = Cascade([Tier("slow", "m", Scripted("late", delay=0.5))], deadline_s=0.2)
    with pytest.raises(DeadlineExceededError):
        await engine.run("q")
    assert engine._overrun._at > -math.inf  # the cut run's unwinding time was observed,
    assert 0.0 <= engine._overrun.current() < 0.2  # and it is small on an idle loop
