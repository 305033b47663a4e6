"""Every fault of the fault-injection upstream end to end through ``Cascade.run``, with a
two-deployment tier and a second tier, over real HTTP on loopback: the outcome (failover,
retry, escalation, typed error), the attempts' records, what reached each server, and the
cost. Waits run on fake time (the resilience clock and sleep are injected)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted import FakeTime
from test_fault_upstream import TABLE

from benchmarks.fault_upstream import Fault, FaultUpstream, RemoteUpstream
from cascade import Cascade, Decision, NoAnswerError, Result, parse_policy
from cascade.resilience import BreakerState, Resilience
from cascade.types import CallOutcome

pytestmark = pytest.mark.anyio

PRICE_IN, PRICE_OUT = 1.0, 2.0  # USD per 1M tokens, both tiers (the cost check is exact)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RemoteUpstream, RemoteUpstream, RemoteUpstream]]:
    with FaultUpstream.running() as a, FaultUpstream.running() as b, \
            FaultUpstream.running() as c:
        yield a, b, c


@pytest.fixture
def abc(servers: tuple[RemoteUpstream, ...]) -> tuple[RemoteUpstream, ...]:
    for server in servers:
        server.reset()
    return servers


def policy(a: str, b: str, c: str, timeout_s: float = 2.0) -> str:
    price = f"{{input_per_1m: {PRICE_IN}, output_per_1m: {PRICE_OUT}}}"
    return f"""
resilience:
  retry: {{max_attempts: 3, initial_backoff_s: 0.5, max_backoff_s: 4, budget_min_retries: 100}}
tiers:
  - name: cheap
    model: small
    timeout_s: {timeout_s}
    load_balancing: least_in_flight   # idle deployments keep the policy's order: a, then b
    price: {price}
    deployments:
      - provider: {{kind: openai, base_url: "{a}", api_key: sk-test-a-0001}}
      - provider: {{kind: openai, base_url: "{b}", api_key: sk-test-b-0002}}
  - name: dear
    model: big
    price: {price}
    provider: {{kind: openai, base_url: "{c}", api_key: sk-test-c-0003}}
"""


async def run(servers: tuple[RemoteUpstream, ...], time: FakeTime,
              timeout_s: float = 2.0) -> tuple[Result | NoAnswerError, Cascade]:
    p = parse_policy(policy(*(s.base_url for s in servers), timeout_s=timeout_s))
    engine = Cascade.from_policy(p)
    engine.resilience = Resilience(p.resilience, clock=time, wall_clock=time, sleep=time.sleep)
    async with engine:
        try:
            return await engine.run("hi"), engine
        except NoAnswerError as exc:
            return exc, engine


def failing() -> list[Fault]:
    return [*TABLE, Fault.HANG]


def error_name(fault: Fault) -> str:
    return "ProviderTimeoutError" if fault is Fault.HANG else TABLE[fault][0].__name__


def retryable(fault: Fault) -> bool:
    return fault is Fault.HANG or TABLE[fault][0].retryable


def answer_cost(result: Result) -> float:
    a = result.attempts[-1]
    return (a.input_tokens * PRICE_IN + a.output_tokens * PRICE_OUT) / 1e6


@pytest.mark.parametrize("fault", failing(), ids=str)
async def test_a_fault_on_one_deployment_fails_over_to_the_other_at_once(
        fault: Fault, abc: tuple[RemoteUpstream, ...]) -> None:
    a, b, c = abc
    a.script([fault.value])
    time = FakeTime()
    result, engine = await run(abc, time, timeout_s=0.5 if fault is Fault.HANG else 5.0)
    assert isinstance(result, Result)
    assert result.tier == 0 and result.answer == "ok 1"  # b's first answer
    [attempt] = result.attempts
    assert [(e.deployment.split("@")[1], e.outcome) for e in attempt.calls] == [
        (a.base_url.split("//")[1].removesuffix("/v1") + "/v1", CallOutcome.ERROR),
        (b.base_url.split("//")[1].removesuffix("/v1") + "/v1", CallOutcome.OK)]
    assert (attempt.calls[0].error or "").startswith(error_name(fault))
    assert time.slept == []  # failover needs no backoff
    assert c.stats()["requests"] == 0 and a.stats()["requests"] == 1
    assert result.cost == pytest.approx(answer_cost(result))
    states = {h.deployment: h.state for h in engine.health()}
    expected = BreakerState.FORCED_OPEN if fault is Fault.UNAUTHORIZED else BreakerState.CLOSED
    assert states[attempt.calls[0].deployment] is expected


@pytest.mark.parametrize("fault", [f for f in failing() if retryable(f)], ids=str)
async def test_a_retryable_fault_on_both_deployments_is_retried_after_backoff(
        fault: Fault, abc: tuple[RemoteUpstream, ...]) -> None:
    a, b, c = abc
    a.script([fault.value])
    b.script([fault.value])
    time = FakeTime()
    result, _ = await run(abc, time, timeout_s=0.5 if fault is Fault.HANG else 5.0)
    assert isinstance(result, Result) and result.tier == 0
    [attempt] = result.attempts
    assert [(e.outcome, e.retry) for e in attempt.calls] == [
        (CallOutcome.ERROR, 0), (CallOutcome.ERROR, 0), (CallOutcome.OK, 1)]
    assert attempt.retries == 1 and len(time.slept) == 1
    retry_after = TABLE[fault][2] if fault in TABLE else None
    assert time.slept[0] <= 4.0
    if retry_after is not None:  # never sooner than the upstream asked
        assert time.slept[0] >= retry_after
    assert attempt.calls[2].wait_s == time.slept[0]
    assert c.stats()["requests"] == 0
    assert a.stats()["requests"] + b.stats()["requests"] == 3
    assert result.cost == pytest.approx(answer_cost(result))


@pytest.mark.parametrize("fault", [f for f in failing() if not retryable(f)], ids=str)
async def test_a_fault_that_is_never_retried_escalates_when_both_deployments_fail(
        fault: Fault, abc: tuple[RemoteUpstream, ...]) -> None:
    a, b, c = abc
    a.script([fault.value])
    b.script([fault.value])
    time = FakeTime()
    result, _ = await run(abc, time)
    assert isinstance(result, Result) and result.tier == 1 and result.answer == "ok 1"
    first, second = result.attempts
    assert first.decision is Decision.ERROR and (first.error or "").startswith(error_name(fault))
    assert [e.outcome for e in first.calls] == [CallOutcome.ERROR, CallOutcome.ERROR]
    assert first.retries == 0 and time.slept == []
    assert second.decision is Decision.ACCEPT and c.stats()["requests"] == 1
    assert result.cost == pytest.approx(answer_cost(result))


async def test_a_persistent_fault_is_retried_max_attempts_times_then_escalates(
        abc: tuple[RemoteUpstream, ...]) -> None:
    a, b, c = abc
    a.script([Fault.SERVER_ERROR.value] * 3)
    b.script([Fault.OVERLOADED.value] * 3)
    time = FakeTime()
    result, _ = await run(abc, time)
    assert isinstance(result, Result) and result.tier == 1
    first = result.attempts[0]
    assert len(first.calls) == 6 and first.retries == 4 and len(time.slept) == 2
    assert a.stats()["requests"] == 3 and b.stats()["requests"] == 3
    assert "OverloadedError" in (first.error or "") or "ServerError" in (first.error or "")


async def test_every_tier_failing_is_a_typed_error_with_the_attempts(
        abc: tuple[RemoteUpstream, ...]) -> None:
    a, b, c = abc
    for server in abc:
        server.script([Fault.UNAUTHORIZED.value] * 5)
    outcome, _ = await run(abc, FakeTime())
    assert isinstance(outcome, NoAnswerError)
    assert [a.decision for a in outcome.attempts] == [Decision.ERROR, Decision.ERROR]
    assert all("AuthenticationError" in (a.error or "") for a in outcome.attempts)
    assert "sk-test" not in str(outcome.attempts)
