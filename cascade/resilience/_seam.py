"""The one seam every model call of a run passes through: a tier's answer, an ensemble
member, a self-consistency sample, a rater's or a grader's call.

``call_model`` picks a healthy deployment (circuit breaker, bulkhead, load-balancing
strategy), reserves the call's worst-case cost against the spending budgets, makes the call
under the tier's timeout, records the outcome in the breaker and the latency statistics,
settles the budget with the real cost, and on failure follows the error's rule
(``cascade.errors``): fail over to the next deployment, retry (tenacity: exponential backoff
with full jitter, never sooner than Retry-After, within the retry budget and the run's
deadline), or give up. Every try is recorded as a ``CallEvent`` on the run's scope.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from cascade._timeouts import timeout
from cascade.errors import (
    AuthenticationError,
    BreakerOpenError,
    BudgetDeniedError,
    BulkheadFullError,
    ContextLengthExceededError,
    ProviderError,
    ProviderTimeoutError,
)
from cascade.providers import estimate_message_tokens
from cascade.resilience._breaker import BreakerState, Permit
from cascade.resilience._deployments import DeploymentState, Target, order
from cascade.resilience._runtime import Resilience
from cascade.telemetry._events import (
    BreakerTransition,
    BudgetDecision,
    FallbackEvent,
    RetryEvent,
    SeamEvent,
)
from cascade.types import CallEvent, CallOutcome, CallPurpose, Completion, ModelCall

log = logging.getLogger("cascade.resilience")

_MIN_CALL_S = 0.05  # a retry needs at least this much of the deadline left after its wait


@dataclass(slots=True)
class RunScope:
    """One run's view of the seam: who is calling (feature, caller metadata for budgets), the
    deadline (on the resilience clock), and the record of every try."""

    resilience: Resilience
    feature: str = "default"
    metadata: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None
    events: list[CallEvent] = field(default_factory=list)
    notify: Callable[[SeamEvent], None] | None = None  # the run's observers (engine)

    def tell(self, event: SeamEvent) -> None:
        if self.notify is not None:
            self.notify(event)

    def remaining(self) -> float:
        if self.deadline is None:
            return math.inf
        return self.deadline - self.resilience.clock()


class _Retry(Exception):
    """A retryable failure on deployment ``index`` (tenacity's signal to try again)."""

    def __init__(self, error: ProviderError, index: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.index = index


@dataclass(slots=True)
class _Call:
    """One model call's progress across its tries."""

    scope: RunScope
    target: Target
    call: ModelCall
    purpose: CallPurpose
    hedge: bool = False
    patient: bool = False
    states: tuple[DeploymentState, ...] = ()
    excluded: set[int] = field(default_factory=set)  # failed for good in this call
    not_before: dict[int, float] = field(default_factory=dict)  # Retry-After per deployment
    avoid: set[int] = field(default_factory=set)  # tried and failed retryably: others first
    retry: int = 0
    waited: float = 0.0
    chosen: int | None = None  # the deployment the current try went to
    last_choice: int | None = None  # tried last (a hedge avoids the primary's deployment)
    last_error: ProviderError | None = None
    retryable_error: ProviderError | None = None

    def event(self, index: int, outcome: CallOutcome, error: BaseException | None = None,
              latency: float = 0.0, cost: float = 0.0) -> None:
        self.scope.events.append(CallEvent(
            self.purpose, self.states[index].key, outcome,
            None if error is None else f"{type(error).__name__}: {error}", latency,
            self.waited, self.retry, self.hedge, cost))


async def call_model(scope: RunScope, target: Target, call: ModelCall,
                     purpose: CallPurpose, *, patient: bool = False) -> Completion:
    """Make one model call through the deployments of ``target``; raise the last
    ``ProviderError`` when no deployment could answer. ``patient``: when every deployment's
    breaker is open, wait for the soonest to half-open if the run's deadline allows (the
    engine sets it for the last tier a run can reach: there is nothing to escalate to)."""
    if target.hedge_after_s is not None and len(target.deployments) > 1:
        delay = _hedge_delay(scope, target)
        if delay is not None:
            return await _hedged(scope, target, call, purpose, delay, patient)
    return await _call(_Call(scope, target, call, purpose, patient=patient))


async def _call(c: _Call) -> Completion:
    r = c.scope.resilience
    c.states = tuple(r.state(d.provider) for d in c.target.deployments)
    try:  # the first round needs no retry machinery (the common, healthy path)
        return await _round(c)
    except _Retry as failed:
        retryable = failed
    if r.retry.max_attempts < 2 or _StopAtDeadline(c).first(_Wait(c).after()):
        raise retryable.error from None
    retrying = AsyncRetrying(
        stop=stop_after_attempt(r.retry.max_attempts) | _StopAtDeadline(c),
        wait=_Wait(c), retry=retry_if_exception_type(_Retry), sleep=_sleeper(c), reraise=True)
    try:
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    raise retryable  # the round already made: tenacity takes it from here
                return await _round(c)
    except _Retry as failed:
        raise failed.error from None
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


def _sleeper(c: _Call):  # noqa: ANN202 - tenacity's sleep callback
    async def sleep(seconds: float) -> None:
        c.retry += 1
        c.waited = seconds
        error = c.retryable_error or c.last_error
        c.scope.tell(RetryEvent(error.deployment if error else "", c.retry, seconds,
                                type(error).__name__ if error else ""))
        if seconds > 0:
            await c.scope.resilience.sleep(seconds)
    return sleep


class _Wait(wait_base):
    """Exponential backoff with full jitter, and never sooner than the Retry-After of the
    deployment that will be ready first."""

    def __init__(self, c: _Call) -> None:
        self.c = c
        policy = c.scope.resilience.retry
        self.jitter = wait_random_exponential(multiplier=policy.initial_backoff_s,
                                              max=policy.max_backoff_s)

    def after(self) -> float:
        """Seconds until the first deployment that is not out for good may be called again
        (its Retry-After); also the wait before the first retry."""
        c, now = self.c, self.c.scope.resilience.clock()
        return min((c.not_before.get(i, 0.0) for i in range(len(c.states))
                    if i not in c.excluded), default=0.0) - now

    def __call__(self, retry_state: RetryCallState) -> float:
        return max(float(self.jitter(retry_state)), self.after(), 0.0)


class _StopAtDeadline(stop_base):
    """A retry that cannot finish before the run's deadline is not started."""

    def __init__(self, c: _Call) -> None:
        self.c = c

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.first(retry_state.upcoming_sleep or 0.0)

    def first(self, wait: float) -> bool:
        return max(wait, 0.0) + _MIN_CALL_S >= self.c.scope.remaining()


async def _round(c: _Call) -> Completion:
    """One pass over the deployments in the strategy's order: the first that answers wins.
    A failure moves on to the next deployment; when none is left and a failure was retryable,
    tenacity backs off and runs another round (within the retry budget)."""
    r = c.scope.resilience
    c.avoid.clear()
    while True:
        now = r.clock()
        ranked = order(c.target.deployments, c.states, c.target.strategy, r.rng)
        candidates = [i for i in ranked if i not in c.excluded and i not in c.avoid
                      and c.not_before.get(i, 0.0) <= now]
        candidates.sort(key=lambda i: i == c.last_choice)  # stable: the rest keep their order
        soonest = math.inf
        for index in candidates:
            permit = await _permit(c, index)
            if permit is None:
                soonest = min(soonest, _open_until(c, index))
                continue
            try:
                return await _try(c, index, permit)
            except ProviderError as error:
                if not error.fallback:
                    raise
                if index != candidates[-1]:  # another deployment is tried next
                    c.scope.tell(FallbackEvent(c.states[index].key, type(error).__name__,
                                               error.retryable))
                if error.retryable:
                    c.avoid.add(index)
                    c.retryable_error = error
                else:
                    c.excluded.add(index)
                c.last_error = error
        if c.avoid:
            await _retry_or_raise(c)
        if not await _wait_for_soonest(c, soonest):
            raise c.last_error or BreakerOpenError(
                ",".join(s.key for s in c.states), "every deployment's circuit breaker is open")


async def _retry_or_raise(c: _Call) -> None:
    """Hand a retryable failure to tenacity, if the deployment's retry budget allows one more
    try (Envoy-style: retries stay a bounded share of calls, so they cannot amplify an outage)."""
    r, error = c.scope.resilience, c.retryable_error
    assert error is not None
    key = error.deployment
    if c.retry + 1 < r.retry.max_attempts and not await r.retry_budget.try_retry(key):
        r.warn_once(f"retry-budget:{key}", "retry budget of %s spent: not retrying (%s); "
                    "this warning repeats at most once a minute", key, type(error).__name__)
        raise error
    raise _Retry(error, 0)


async def _wait_for_soonest(c: _Call, soonest: float) -> bool:
    """Every candidate was refused by its breaker: wait for the soonest to half-open if the
    deadline allows (never fail at once merely because all are cooling down)."""
    r = c.scope.resilience
    if soonest is math.inf or not c.patient:
        return False
    wait = max(0.0, soonest - r.clock())
    if wait + _MIN_CALL_S >= c.scope.remaining():
        return False
    c.waited = wait
    await r.sleep(wait)
    return True


def _open_until(c: _Call, index: int) -> float:
    breaker = c.scope.resilience.breakers.get(c.states[index].key)
    if breaker.state is BreakerState.FORCED_OPEN:
        return math.inf
    return breaker.open_until or c.scope.resilience.clock()


async def _permit(c: _Call, index: int) -> Permit | None | bool:
    """The breaker's permission (``True`` when breakers are off); None: refused, recorded."""
    r = c.scope.resilience
    if not r.breakers_enabled:
        return True
    key = c.states[index].key
    if r.breakers.sync_due(key):
        await r.breakers.sync(key)
    permit = r.breakers.get(key).acquire()
    if permit is None:
        c.event(index, CallOutcome.SKIPPED, BreakerOpenError(key, "circuit breaker open"))
        c.last_error = c.last_error or BreakerOpenError(key, "circuit breaker open")
    return permit


async def _try(c: _Call, index: int, permit: Permit | bool) -> Completion:
    """One call to one deployment: budget, bulkhead, timeout, breaker and latency records."""
    r, state, deployment = c.scope.resilience, c.states[index], c.target.deployments[index]
    c.chosen = index
    window = deployment.context_window
    if window is not None and estimate_message_tokens(c.call.messages) + c.call.max_tokens > window:
        _release(c, index, permit)
        raise ContextLengthExceededError(state.key, 400, f"the prompt does not fit {window} tokens")
    reservation = await _reserve(c, index, permit)
    started, answered = r.clock(), False
    try:
        if not state.bulkhead.try_acquire():
            await state.bulkhead.acquire()
        try:
            if r.retry.max_attempts > 1 and c.retry == 0:  # counted when sent: the budget's base
                await r.retry_budget.on_request(state.key)
            started = r.clock()
            async with timeout(c.target.timeout_s):
                completion = await deployment.provider.complete(c.call)
        finally:
            state.bulkhead.release()
    except TimeoutError:
        answered = True
        error: ProviderError = ProviderTimeoutError(
            state.key, f"no answer within {c.target.timeout_s:g} s", phase="total")
    except ProviderError as exc:
        answered = True
        error = exc
    else:
        answered = True
        latency = r.clock() - started
        cost = c.target.cost_of(completion)
        if _record(c, index, permit, None, latency):
            await r.breakers.publish(state.key)
        state.latency.observe(latency)
        if reservation is not None:
            await r.budgets.settle(reservation, cost)  # type: ignore[union-attr]
        c.event(index, CallOutcome.OK, latency=latency, cost=cost)
        return completion
    finally:
        if not answered:  # cancelled (deadline, a hedge that lost): nothing attributable
            _release(c, index, permit)
            c.event(index, CallOutcome.CANCELLED, latency=r.clock() - started)
    return await _failed(c, index, permit, error, r.clock() - started, reservation)


async def _failed(c: _Call, index: int, permit: Permit | bool, error: ProviderError,
                  latency: float, reservation: object) -> Completion:
    r = c.scope.resilience
    if reservation is not None:
        await r.budgets.settle(reservation, 0.0)  # type: ignore[union-attr]
    c.event(index, _outcome(error), error, latency)
    if _record(c, index, permit, error, latency):
        await r.breakers.publish(c.states[index].key)
    c.last_error = error
    if error.retry_after_s is not None:
        now = r.clock()
        c.not_before[index] = max(c.not_before.get(index, now), now + error.retry_after_s)
    raise error


def _outcome(error: ProviderError) -> CallOutcome:
    return CallOutcome.SHED if isinstance(error, BulkheadFullError) else CallOutcome.ERROR


async def _reserve(c: _Call, index: int, permit: Permit | bool) -> object | None:
    """Reserve the call's worst-case cost (inputs as bytes, outputs as max_tokens × n) against
    every applicable budget; denied -> ``BudgetDeniedError`` (not retried, no fallback)."""
    r = c.scope.resilience
    if r.budgets is None:
        return None
    worst = _worst_cost(c)
    outcome = await r.budgets.reserve(c.scope.feature, c.scope.metadata, worst, requests=1)
    if hasattr(outcome, "adds"):
        c.scope.tell(BudgetDecision(c.states[index].key, True, worst))
        return outcome
    _release(c, index, permit)
    rule = getattr(outcome, "rule", None)
    name = getattr(rule, "name", "budget")
    c.scope.tell(BudgetDecision(c.states[index].key, False, worst, str(name)))
    error = BudgetDeniedError(c.states[index].key, f"budget {name!r} cannot afford this call "
                              f"(worst case ${worst:.6f})", limit=str(name))
    c.event(index, CallOutcome.DENIED, error)
    raise error


def _worst_cost(c: _Call) -> float:
    """An upper bound of the call's cost: a token is at least one byte, plus template overhead
    per message; at most ``max_tokens`` per choice."""
    inputs = sum(len(m.content.encode("utf-8", "replace")) + 16 for m in c.call.messages) + 16
    outputs = c.call.max_tokens * max(1, c.call.n)
    return inputs * c.target.price_in + outputs * c.target.price_out


def _release(c: _Call, index: int, permit: Permit | bool) -> None:
    if isinstance(permit, Permit):
        c.scope.resilience.breakers.get(c.states[index].key).release(permit)


def _record(c: _Call, index: int, permit: Permit | bool, error: ProviderError | None,
            latency: float) -> bool:
    """Tell the breaker; take out a deployment whose key was refused. True: the breaker
    opened, so the caller publishes the trip to the shared store."""
    if not isinstance(permit, Permit):
        return False
    r, key = c.scope.resilience, c.states[index].key
    breaker = r.breakers.get(key)
    failure = error is not None and error.breaker_failure
    breaker.record(permit, failure=failure, duration_s=latency)
    if isinstance(error, AuthenticationError):
        log.error("deployment %s refused our credentials (%s): taken out until reset",
                  key, error.detail)
        breaker.force_open(f"authentication: HTTP {error.status}")
    opened = False
    for transition in breaker.drain():
        log.warning("circuit breaker %s: %s -> %s (%s)", key, transition.old.value,
                    transition.new.value, transition.reason)
        c.scope.tell(BreakerTransition(key, transition.old.value, transition.new.value,
                                       transition.reason))
        opened = opened or transition.new is BreakerState.OPEN
    return opened


# --- hedging -----------------------------------------------------------------------------------


def _hedge_delay(scope: RunScope, target: Target) -> float | None:
    if isinstance(target.hedge_after_s, (int, float)):
        return float(target.hedge_after_s)
    first = scope.resilience.state(target.deployments[0].provider).latency
    if first.samples < target.hedge_min_samples:
        return None
    return first.p95()


async def _hedged(scope: RunScope, target: Target, call: ModelCall, purpose: CallPurpose,
                  delay: float, patient: bool) -> Completion:
    """The primary call; after ``delay`` without an answer, a second call that starts on
    another deployment. The first answer wins and the other is cancelled; a cancelled call
    is charged its prompt (providers bill what they processed)."""
    primary = _Call(scope, target, call, purpose, patient=patient)
    second = _Call(scope, target, call, purpose, hedge=True, patient=patient)
    won: list[Completion] = []
    errors: list[ProviderError] = []
    done = anyio.Event()
    first_event = len(scope.events)

    async def run(c: _Call, tg: anyio.abc.TaskGroup) -> None:
        try:
            won.append(await _call(c))
            tg.cancel_scope.cancel()
        except ProviderError as exc:
            errors.append(exc)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, primary, tg)
        with anyio.move_on_after(delay):
            await done.wait()
        if not won and not errors:
            second.last_choice = primary.chosen
            tg.start_soon(run, second, tg)
    _charge_cancelled(scope, target, call, first_event)
    if won:
        return won[0]
    raise errors[0]


def _charge_cancelled(scope: RunScope, target: Target, call: ModelCall, first: int) -> None:
    """The hedged call's cancelled tries (from event ``first`` on) are charged their prompt."""
    prompt = estimate_message_tokens(call.messages) * target.price_in
    for i in range(first, len(scope.events)):
        event = scope.events[i]
        if event.outcome is CallOutcome.CANCELLED and event.cost == 0.0 and prompt:
            scope.events[i] = CallEvent(event.purpose, event.deployment, event.outcome,
                                        event.error, event.latency_s, event.wait_s, event.retry,
                                        event.hedge, prompt)
