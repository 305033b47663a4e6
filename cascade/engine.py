"""The request path, top to bottom: validate, then climb the tiers cheapest-first until an
estimator's confidence reaches its tier's threshold, the tiers run out, a budget or an
unavailable tier stops the climb, or the deadline expires. Each concern is called at one
site here; every model call (tier, member, sample, rater, grader) passes one seam,
``cascade.resilience.call_model``, where deployments, breakers, retries and budgets act."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import httpx
from opentelemetry.trace import Tracer

from cascade._build import build_routing, build_tiers
from cascade._calls import asker, estimate_context, sampler
from cascade._ensemble import Called, call_tier, paid, with_answer_chosen
from cascade._fallback import estimator_for
from cascade._request import PromptLike, check_deadline, make_request
from cascade._tier import Routing, Tier
from cascade._timeouts import timeout
from cascade.errors import (
    BudgetDeniedError,
    BudgetExceededError,
    ContentFilteredError,
    DeadlineExceededError,
    NoAnswerError,
    PromptTooLongError,
    ProviderError,
    ProviderUnreachableError,
)
from cascade.policy import (
    OnBudgetExhausted,
    OnContentFilter,
    OnUnavailable,
    Policy,
    RoutingMode,
    load_policy,
)
from cascade.providers import ClientPool, ProviderFactory, estimate_message_tokens
from cascade.resilience import DeploymentHealth, Resilience, RunScope
from cascade.routing import RouteContext, RouteTier
from cascade.routing._unified import UnifiedSettings
from cascade.telemetry import (
    AttemptInfo,
    BudgetGauge,
    EstimateInfo,
    MetricsObserver,
    Observers,
    RunInfo,
    RunObserver,
    SloMonitor,
    TracingObserver,
    current_trace_id,
    monitor_for_policy,
)
from cascade.types import (
    Attempt,
    CallEvent,
    CallOutcome,
    CallPurpose,
    Climb,
    Completion,
    Decision,
    MemberAnswer,
    Request,
    Result,
    RouteDecision,
    RouteReason,
    StopReason,
    climbs,
)
from verifiers import Estimate, Peer, conversation_text, guard_estimate
from verifiers._arithmetic import judged

if TYPE_CHECKING:
    from cascade._stream import CascadeStream
    from cascade.telemetry import AuditSampler

log = logging.getLogger("cascade")
Clock = Callable[[], float]


@dataclass(slots=True)
class _InFlight:
    """The attempt under way, so a deadline can record it with what it had."""

    tier: int
    started: float
    info: AttemptInfo
    first_event: int = 0  # the run's call events from here on belong to this attempt
    completion: Completion | None = None
    members: list[MemberAnswer] = field(default_factory=list)  # ensemble members finished so far


@dataclass(slots=True)
class _RunState:
    request: Request
    scope: RunScope
    run: RunInfo
    attempts: list[Attempt] = field(default_factory=list)
    best: tuple[int, str] | None = None  # highest tier that produced an answer, and the answer
    in_flight: _InFlight | None = None
    route: RouteDecision | None = None
    check: bool = True  # False in route-only mode: the routed tier's answer is accepted
    peers: list[Peer] = field(default_factory=list)  # every answer paid for so far (evidence)
    stop: StopReason | None = None  # a budget or an unavailable tier ended the climb
    budget_limit: str = ""  # the budget that could not afford the next call
    unified: bool = False  # routing.mode unified: attempts escalate until its decision stops


_UNWIND_S = 0.0003  # CPU time to unwind one cancelled run on a small, busy machine (docs)
_BASE_MARGIN_S = 0.25  # the margin's cap for a run alone (10 % of shorter deadlines)


def _cut_at(deadline: float | None, concurrent: int = 0, overrun: float = 0.0) -> float:
    """When the run stops its work: a little before its deadline, so that cancelling the
    calls under way is done by the deadline even when many runs end at once.

    The margin is 10 % (at most 250 ms: a gen-2 collection of a busy process took up to 0.5 s
    here) plus the time to unwind the ``concurrent`` runs in
    flight when this one started: runs that start together reach their deadlines together,
    and one event loop unwinds them one after the other; a run started after k others is cut
    k unwinds earlier, so the last one does not wait for the k before it (1000 runs started at
    once: 0.3 s). Plus ``overrun``: how late runs cut lately still finished (the loop's lag
    under load, a garbage-collector pause). The margin never exceeds a quarter of the
    deadline."""
    if deadline is None:
        return math.inf
    margin = min(_BASE_MARGIN_S, 0.1 * deadline) + concurrent * _UNWIND_S + overrun
    return deadline - min(margin, 0.25 * deadline)


class _Overrun:
    """The longest time a cut run took past its cut in the last minute (``Cascade``'s, so
    the next runs' margins cover the lag this process shows now; it decays to 0 when the
    lag is gone)."""

    __slots__ = ("_at", "_clock", "_worst")
    WINDOW_S = 60.0

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._worst, self._at = 0.0, -math.inf

    def observe(self, late_s: float) -> None:
        now = self._clock()
        if late_s >= self.current(now):
            self._worst, self._at = late_s, now

    def current(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        return self._worst if now - self._at < self.WINDOW_S else 0.0


def _calls_since(state: _RunState, flight: _InFlight) -> tuple[CallEvent, ...]:
    return tuple(state.scope.events[flight.first_event:])


def _unanswered_cost(calls: Sequence[CallEvent]) -> float:
    """What tries without an answer were charged (a hedge cancelled after its prompt was sent)."""
    return math.fsum(c.cost for c in calls if c.outcome is not CallOutcome.OK)


def _answered_by(tier: Tier, calls: Sequence[CallEvent]) -> str:
    """The deployment whose answer the tier returned (else every deployment of the tier)."""
    for call in reversed(calls):
        if call.outcome is CallOutcome.OK and call.purpose is CallPurpose.TIER:
            return call.deployment
    return tier.deployment


def _accepts_anything(tier: Tier) -> bool:
    """A threshold of 0 accepts every answer: the estimator is not run."""
    return tier.threshold is not None and tier.threshold <= 0.0


def _attempt_info(run: RunInfo, index: int, tier: Tier) -> AttemptInfo:
    request = run.request
    server = getattr(tier.provider, "server_address", None)  # HTTP providers: (host, port)
    return AttemptInfo(
        run, index, tier.name, tier.model,
        tier.max_tokens if request.max_tokens is None else request.max_tokens,
        tier.temperature if request.temperature is None else request.temperature,
        *(server if server is not None else (None, None)))


def _audit_sampler(policy: Policy, tiers: Sequence[Tier],
                   resilience: Resilience) -> AuditSampler | None:
    spec = policy.telemetry.audit
    if spec is None:
        return None
    from cascade.telemetry import AuditSampler

    names = [t.name for t in tiers]
    index = names.index(spec.judge) if spec.judge is not None else len(tiers) - 1
    return AuditSampler(tiers[index], index, rate=spec.rate, answer=spec.answer,
                        resilience=resilience, alpha=spec.alpha, confidence=spec.confidence,
                        budget_usd=spec.budget_usd, window=spec.window)


def _estimate_info(name: str, tier: Tier, estimate: Estimate | None, failure: str | None,
                   calls: int, began_ns: int) -> EstimateInfo:
    confidence = None if estimate is None else estimate.confidence
    usage = None if estimate is None else estimate.usage
    return EstimateInfo(
        name, confidence, tier.threshold,
        confidence is not None and confidence >= (tier.threshold or 0.0),
        usage.cost if usage else 0.0, usage.input_tokens if usage else 0,
        usage.output_tokens if usage else 0, calls, failure, began_ns, time.time_ns())


class Cascade:
    """Long-lived cascade for one feature. Use ``async with`` (or ``aclose``) so pooled
    connections and loaded models are released."""

    def __init__(self, tiers: Sequence[Tier], *, feature: str = "default",
                 deadline_s: float | None = None, clock: Clock = time.perf_counter,
                 resources: ProviderFactory | None = None, tracer: Tracer | None = None,
                 routing: Routing | None = None, resilience: Resilience | None = None,
                 observers: Sequence[RunObserver] = (), record_content: bool = False,
                 metrics: bool = True, slo: SloMonitor | None = None,
                 audit: AuditSampler | None = None) -> None:
        """``observers`` are told of every run (after tracing and, unless ``metrics`` is
        False, OpenTelemetry metrics); ``record_content`` puts prompt and answer text into
        spans; ``slo`` counts every run and, inside ``async with``, evaluates its alerts in the
        background; ``audit`` re-checks a share of accepted answers there."""
        if not tiers:
            raise ValueError("a cascade needs at least one tier")
        self.tiers = tuple(tiers)
        self._by_name = {tier.name: tier for tier in self.tiers}
        self.feature = feature
        self.deadline_s = deadline_s
        self._clock = clock
        self._resources = resources
        self.slo, self.audit = slo, audit
        self.resilience = resilience or Resilience()
        budgets = self.resilience.budgets
        self.budget_gauge = BudgetGauge(budgets, feature) if metrics and budgets else None
        self.observers = Observers((TracingObserver(tracer, record_content=record_content),
                                    *([MetricsObserver()] if metrics else []),
                                    *([slo.observer()] if slo is not None else []),
                                    *([audit] if audit is not None else []),
                                    *([self.budget_gauge] if self.budget_gauge else []),
                                    *observers))
        self._background: AsyncExitStack | None = None
        self._running = 0  # runs in flight (their deadlines may coincide: ``_cut_at``)
        self._overrun = _Overrun(time.monotonic)  # how late cut runs finished lately
        self._cutting: dict[anyio.CancelScope, tuple[float, float, int]] = {}  # scope ->
        # (entered, deadline_s, runs in flight then) of every run with a deadline, in flight
        self.routing = routing
        self._route_tiers = tuple(RouteTier(t.name, t.model) for t in self.tiers)

    @classmethod
    def from_policy(cls, policy: Policy, *, base_dir: str | Path = ".",
                    transport: httpx.AsyncBaseTransport | None = None,
                    clock: Clock = time.perf_counter,
                    observers: Sequence[RunObserver] = ()) -> Cascade:
        """Build every tier now: configuration errors surface before any run. ``observers``
        are told of every run, after those the policy names."""
        observers = [*policy.telemetry.build_observers(), *observers]  # before anything opens
        pool = ClientPool(transport, max_connections=policy.resilience.bulkhead.max_in_flight)
        factory = ProviderFactory(Path(base_dir), pool)
        tiers = build_tiers(policy, factory, Path(base_dir))
        routing = build_routing(policy, tiers, factory, Path(base_dir))
        resilience = Resilience(policy.resilience, policy.budgets,
                                on_budget_exhausted=policy.on_budget_exhausted)
        feature = policy.feature or "default"
        audit = _audit_sampler(policy, tiers, resilience)
        slo = monitor_for_policy(policy, feature, resilience.store, base_dir, audit, routing)
        return cls(tiers, feature=feature, deadline_s=policy.deadline_s,
                   clock=clock, resources=factory, routing=routing, resilience=resilience,
                   observers=observers, record_content=policy.telemetry.record_content,
                   metrics=policy.telemetry.metrics, slo=slo, audit=audit)

    @classmethod
    def from_yaml(cls, path: str | Path, *, env: Mapping[str, str] | None = None,
                  transport: httpx.AsyncBaseTransport | None = None,
                  observers: Sequence[RunObserver] = ()) -> Cascade:
        policy = load_policy(path, env=env)
        return cls.from_policy(policy, base_dir=Path(path).parent, transport=transport,
                               observers=observers)

    async def __aenter__(self) -> Cascade:
        runners = [r for r in (self.slo, self.audit, self.budget_gauge) if r is not None]
        if runners and self._background is None:
            self._background = AsyncExitStack()  # SLO evaluations, audits, the budget gauge
            for runner in runners:
                await self._background.enter_async_context(runner.running())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        background, self._background = self._background, None
        try:
            if background is not None:  # (its task group is left in the task that entered it)
                await background.aclose()  # a last evaluation, its alerts delivered
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    if self._resources is not None:
                        await self._resources.aclose()
                finally:
                    await self.resilience.aclose()

    async def check(self, timeout_s: float | None = None) -> None:
        """Raise ``ProviderUnreachableError`` (or a config error) for the first deployment that
        cannot be reached within ``timeout_s`` (default: the policy's deadline, at most 10 s);
        run nothing."""
        limit = timeout_s if timeout_s is not None else min(self.deadline_s or 10.0, 10.0)
        seen: set[int] = set()
        for tier in self.tiers:
            for provider in tier.providers:
                if id(provider) not in seen:
                    seen.add(id(provider))
                    try:
                        with anyio.fail_after(limit):
                            await provider.check()
                    except TimeoutError:
                        raise ProviderUnreachableError(
                            provider.deployment, f"no answer to the check within {limit:g} s") from None

    def health(self) -> tuple[DeploymentHealth, ...]:
        """Every deployment called so far: circuit-breaker state, rates, calls in flight and
        waiting, latency."""
        return self.resilience.health()

    # --- the request path -------------------------------------------------------------------

    async def run(self, prompt: PromptLike, *, metadata: Mapping[str, str] | None = None,
                  deadline_s: float | None = None, max_tokens: int | None = None,
                  temperature: float | None = None, stop: Sequence[str] | None = None) -> Result:
        """Answer ``prompt``; ``max_tokens``, ``temperature`` and ``stop`` override every
        tier's own for this request (``InvalidRequestError`` when out of range)."""
        deadline = check_deadline(self.deadline_s if deadline_s is None else deadline_s)
        request = make_request(prompt, self.feature, metadata, max_tokens=max_tokens,
                               temperature=temperature, stop=stop)
        runnable = [tier.fits(request.messages, request.max_tokens) for tier in self.tiers]
        if not any(runnable):
            self._too_long(request)
        r, run = self.resilience, RunInfo(self.feature, request)
        calls = RunScope(r, self.feature, request.metadata,  # every model call's seam state
                         None if deadline is None else r.clock() + deadline,
                         notify=functools.partial(self.observers.seam, run))
        state = _RunState(request, calls, run)
        self.observers.run_started(run)
        self._running += 1
        try:
            result = await self._climb(state, runnable, deadline)
        except BaseException as exc:
            self.observers.run_finished(run, None, exc)
            raise
        finally:
            self._running -= 1
        self.observers.run_finished(run, result, None)
        return result

    async def _climb(self, state: _RunState, runnable: Sequence[bool],
                     deadline: float | None) -> Result:
        started, trace_id = self._clock(), current_trace_id()
        if deadline is None:  # nothing to cut: no cancel scope (one less on every run)
            await self._steps(state, runnable)
            return self._finish(state, False, started, trace_id)
        concurrent = self._running - 1
        cut_s = _cut_at(deadline, concurrent, self._overrun.current())
        with anyio.move_on_after(cut_s) as scope:
            cutting = self._cutting[scope] = (scope.deadline - cut_s, deadline, concurrent)
            try:
                await self._steps(state, runnable)
            finally:
                del self._cutting[scope]
        if scope.cancelled_caught:  # how long unwinding took here: the margins cover it
            self._overran(max(0.0, anyio.current_time() - cutting[0] - cut_s))
        if scope.cancelled_caught and state.in_flight is not None:
            cut = self._timed_out(state.in_flight, state)
            state.attempts.append(cut)
            self.observers.attempt_finished(state.in_flight.info, cut)
            if cut.answer is not None:  # an ensemble member that answered before the deadline
                state.best = (cut.tier, cut.answer)
        return self._finish(state, scope.cancelled_caught, started, trace_id)

    async def _steps(self, state: _RunState, runnable: Sequence[bool]) -> None:
        """Route, then climb the tiers until one is accepted or the climb must stop."""
        start = await self._start(state, runnable)
        if self.routing is not None and self.routing.unified is not None:
            start = len(self.tiers)  # routing.mode unified: its own steps, not the climb
            await self._unified(state, runnable, self.routing.unified)
        for index, tier in enumerate(self.tiers):
            if index < start:
                continue  # routed past: not run, not recorded as an attempt
            if not runnable[index]:
                state.attempts.append(self._skipped(index, tier))
                continue
            last = not any(runnable[index + 1:])
            if await self._attempt(index, tier, state, last) is Decision.ACCEPT:
                break
            if state.stop is not None:
                break
        await self._budget_fallback(state, runnable)

    def _overran(self, late_s: float) -> None:
        """A cut run finished ``late_s`` after its cut: when that is the longest lately, the
        runs in flight are cut earlier too (their scopes' deadlines move), not only the next."""
        before = self._overrun.current()
        self._overrun.observe(late_s)
        overrun = self._overrun.current()
        if overrun <= before:
            return
        for scope, (entered, deadline, concurrent) in self._cutting.items():
            scope.deadline = min(scope.deadline, entered + _cut_at(deadline, concurrent, overrun))

    def stream(self, prompt: PromptLike, *, metadata: Mapping[str, str] | None = None,
               deadline_s: float | None = None, max_tokens: int | None = None,
               temperature: float | None = None, stop: Sequence[str] | None = None,
               live: bool = False) -> CascadeStream:
        """``run`` as a stream: ``async with cascade.stream(p) as s: async for item in s``
        gives ``Delta`` items then ``Done(result)``. ``live``: stream the last tier's tokens as
        they come when no estimator judges it (docs/gateway.md has the trade-off)."""
        from cascade._stream import CascadeStream, RunOptions

        options = RunOptions(metadata, deadline_s, max_tokens, temperature, stop)
        return CascadeStream(self, prompt, options, live=live)

    # --- routing ------------------------------------------------------------------------------

    async def _start(self, state: _RunState, runnable: Sequence[bool]) -> int:
        """The tier to start from: 0 without routing; else the router's pick (moved up to the
        next tier whose window fits, or down to the last that fits)."""
        routing = self.routing
        if routing is None or routing.mode is RoutingMode.CASCADE:
            return 0
        state.check = routing.mode is not RoutingMode.ROUTE
        state.route = decision = await self._route(routing, state.request, state.scope)
        self.observers.routed(state.run, decision)
        fitting = [i for i in range(len(self.tiers)) if runnable[i]]
        return next((i for i in fitting if i >= decision.start), fitting[-1])

    async def _unified(self, state: _RunState, runnable: Sequence[bool],
                       unified: UnifiedSettings) -> None:
        """``routing.mode: unified``: per step, stop or call the tier whose expected quality
        gain beats λ × its cost (``cascade.routing._unified``); the answer is the called tier's
        of highest estimated quality (``ACCEPT``, its estimate as confidence). A tier that fails
        or is cut by max_tokens is not called again and gives no answer."""
        state.check, state.unified = False, True
        prior = unified.prior([s.p_ok for s in state.route.scores] if state.route else [])
        called: list[int] = []
        keys: list[str | None] = []  # each answer's group key, judged once
        open_ = list(runnable)
        while state.stop is None:
            step = unified.model.decide(prior, called, unified.grouped(keys),
                                        unified.cost_weight, open_)
            if step.call is None:
                break
            open_[step.call] = False
            await self._attempt(step.call, self.tiers[step.call], state, not any(open_))
            attempt = state.attempts[-1]
            if attempt.decision is Decision.ESCALATE and attempt.answer is not None and not (
                    attempt.finish_reason == "length" and not self.tiers[step.call].accept_truncated):
                key, false = (await judged(unified.key.judge, attempt.answer)
                              if unified.key.check_arithmetic else (unified.key(attempt.answer), ()))
                if false:  # counts as no answer: say why on the attempt
                    state.attempts[-1] = dataclasses.replace(
                        attempt, details={**attempt.details, "false_arithmetic": list(false)})
                called.append(step.call)
                keys.append(key)
        quality = unified.model.qualities(prior, called, unified.grouped(keys))
        if called:
            chosen = max(called, key=lambda t: quality[t])
            at = next(i for i, a in enumerate(state.attempts) if a.tier == chosen)
            state.attempts[at] = dataclasses.replace(
                state.attempts[at], decision=Decision.ACCEPT, confidence=float(quality[chosen]))
            state.best = (chosen, state.attempts[at].answer or "")

    async def _route(self, routing: Routing, request: Request,
                     state_scope: RunScope) -> RouteDecision:
        ctx = RouteContext(
            conversation_text([(m.role, m.content) for m in request.messages], routing.max_chars),
            self._route_tiers, request.metadata,
            asker(routing.grader, request, state_scope, CallPurpose.GRADER)
            if routing.grader is not None else None)
        started = self._clock()
        try:
            with anyio.fail_after(routing.timeout_s):
                decision = await routing.router.route(ctx)
            if not 0 <= decision.start < len(self.tiers):
                raise IndexError(f"start tier {decision.start} of {len(self.tiers)}")
        except TimeoutError:
            decision = self._route_failed(routing, f"no decision within {routing.timeout_s:g} s")
        except Exception as exc:  # noqa: BLE001 - a router never fails a run: safe default, recorded
            log.warning("router %s failed: %r", routing.router.name, exc)
            decision = self._route_failed(routing, f"{type(exc).__name__}: {exc}")
        return dataclasses.replace(decision, latency_s=self._clock() - started)

    def _route_failed(self, routing: Routing, why: str) -> RouteDecision:
        default = routing.router.default
        return RouteDecision(default, self.tiers[default].name, RouteReason.FAILED,
                             routing.router.name, detail=why)

    async def _attempt(self, index: int, tier: Tier, state: _RunState, last: bool) -> Decision:
        info = _attempt_info(state.run, index, tier)
        flight = state.in_flight = _InFlight(index, self._clock(), info, len(state.scope.events))
        self.observers.attempt_started(info)
        attempt: Attempt | None = None
        try:
            called = await call_tier(tier, state.request, self._clock, flight.members,
                                     state.scope, last=last)
        except ProviderError as exc:
            attempt = self._failed(index, tier, flight, exc, state)
            self._stop_after_failure(tier, state, exc)  # may raise BudgetExceededError
        else:
            flight.completion, flight.members[:] = called.completion, called.members
            state.best = (index, called.completion.text)
            estimate, failure = None, None
            if state.check:
                peers = (*called.peers(tier.name, earlier=False), *state.peers)
                estimate, failure = await self._estimate(tier, state, called, peers)
            state.peers += called.peers(tier.name, earlier=True)
            attempt = self._judged(index, tier, flight, called, estimate, failure, last,
                                   state)
        finally:
            if attempt is not None:  # else cancelled: the deadline's record is told (_climb)
                self.observers.attempt_finished(info, attempt)
        state.in_flight = None
        state.attempts.append(attempt)
        return attempt.decision

    def _stop_after_failure(self, tier: Tier, state: _RunState, error: ProviderError) -> None:
        """A budget that cannot afford the tier, or a tier with no available deployment whose
        policy says stop, ends the climb (``on_budget_exhausted: error`` raises)."""
        if isinstance(error, BudgetDeniedError):
            state.stop, state.budget_limit = StopReason.BUDGET, error.limit
            if self.resilience.on_budget_exhausted is OnBudgetExhausted.ERROR:
                raise BudgetExceededError(f"budget {error.limit!r} cannot afford tier "
                                          f"{tier.name!r}", state.attempts, limit=error.limit)
        elif isinstance(error, ContentFilteredError):
            if tier.on_content_filter is OnContentFilter.STOP:
                state.stop = StopReason.CONTENT_FILTERED
        elif tier.on_unavailable is OnUnavailable.BEST_SO_FAR and state.best is not None:
            state.stop = StopReason.UNAVAILABLE

    async def _budget_fallback(self, state: _RunState, runnable: Sequence[bool]) -> None:
        """``on_budget_exhausted: cheapest``: answer from the cheapest tier when the run has
        not called it (a router started higher)."""
        if state.stop is not StopReason.BUDGET or \
                self.resilience.on_budget_exhausted is not OnBudgetExhausted.CHEAPEST:
            return
        first = next((i for i, ok in enumerate(runnable) if ok), None)
        if first is None or any(a.tier == first for a in state.attempts):
            return
        state.check = False  # its answer is returned as is, not accepted (stop: budget)
        await self._attempt(first, self.tiers[first], state, last=True)

    async def _estimate(self, tier: Tier, state: _RunState, called: Called,
                        peers: tuple[Peer, ...]) -> tuple[Estimate | None, str | None]:
        if tier.estimator is None or _accepts_anything(tier):
            return None, None  # nothing to decide: no need to pay for a confidence
        request, scope = state.request, state.scope
        rater = self._by_name.get(tier.rater) if tier.rater is not None else None
        ask = asker(rater, request, scope) if rater is not None else None
        ctx = estimate_context(tier, request, called, sampler(tier, request, scope), ask, peers)
        estimator = estimator_for(tier, tier.estimator, called.completion)  # or its fallback
        began, first = time.time_ns(), len(scope.events)
        estimate, failure = None, None
        try:
            async with timeout(tier.timeout_s):
                estimate = await estimator.estimate(ctx)
                if tier.degeneracy_checks:
                    estimate = guard_estimate(estimate, ctx)
        except TimeoutError:
            failure = f"EstimatorTimeout: no confidence within {tier.timeout_s:g} s"
        except Exception as exc:  # noqa: BLE001 - an estimator never crashes a run: recorded
            log.warning("estimator %s failed on tier %s: %r", tier.estimator.name, tier.name, exc)
            failure = f"{type(exc).__name__}: {exc}"
        assert state.in_flight is not None  # set by _attempt for the estimate's duration
        self.observers.estimate_made(state.in_flight.info, _estimate_info(
            estimator.name, tier, estimate, failure, len(scope.events) - first, began))
        return estimate, failure

    # --- building the records (pure) --------------------------------------------------------

    def _judged(self, index: int, tier: Tier, flight: _InFlight, called: Called,
                estimate: Estimate | None, failure: str | None, last: bool,
                state: _RunState) -> Attempt:
        check = state.check
        calls = _calls_since(state, flight)
        confidence = None if estimate is None else estimate.confidence
        completion = called.completion
        if state.unified:  # routing.mode unified: the chosen answer is accepted after the steps
            decision = Decision.ESCALATE
        elif completion.choices[0].truncated and not tier.accept_truncated:
            decision = Decision.REJECT if last else Decision.ESCALATE  # cut by max_tokens
        elif not check or tier.estimator is None or _accepts_anything(tier) or confidence is not None and confidence >= (tier.threshold or 0.0):
            decision = Decision.ACCEPT
        else:  # below threshold, or the estimator failed (counts as low confidence)
            decision = Decision.REJECT if last else Decision.ESCALATE
        usage = estimate.usage if estimate is not None else None
        return Attempt(
            index, tier.name, called.source if tier.members else tier.model,
            _answered_by(tier, calls), decision, confidence, tier.threshold,
            called.input_tokens + (usage.input_tokens if usage else 0),
            called.output_tokens + (usage.output_tokens if usage else 0),
            called.cost + (usage.cost if usage else 0.0) + _unanswered_cost(calls),
            self._clock() - flight.started,
            estimator=tier.estimator.name if tier.estimator and check else None,
            estimator_error=failure, answer=completion.text,
            details=dict(estimate.details) if estimate is not None else {},
            label=completion.choices[0].label, members=called.members, calls=calls,
            finish_reason=completion.choices[0].finish_reason,
        )

    def _failed(self, index: int, tier: Tier, flight: _InFlight, error: ProviderError,
                state: _RunState) -> Attempt:
        calls = _calls_since(state, flight)
        return Attempt(index, tier.name, tier.model, tier.deployment, Decision.ERROR,
                       None, tier.threshold, cost=paid(flight.members)[0] + _unanswered_cost(calls),
                       latency_s=self._clock() - flight.started,
                       error=f"{type(error).__name__}: {error}", members=tuple(flight.members),
                       calls=calls)

    def _timed_out(self, flight: _InFlight, state: _RunState) -> Attempt:
        """The attempt the run's deadline cut short, with what it had been paid for."""
        tier = self.tiers[flight.tier]
        if flight.members:  # an ensemble: its chosen answer, else the first that came back
            members = with_answer_chosen(tuple(flight.members))
            chosen = next((m for m in members if m.chosen), None)
            cost, tokens = paid(members)
            answer, label = (chosen.answer, chosen.label) if chosen else (None, None)
            model = chosen.model if chosen else tier.model
        else:
            completion, members, model = flight.completion, (), tier.model
            cost = tier.cost_of(completion) if completion is not None else 0.0
            tokens = (completion.input_tokens, completion.output_tokens) if completion else (0, 0)
            answer = completion.text if completion else None
            label = completion.choices[0].label if completion else None
        calls = _calls_since(state, flight)
        return Attempt(
            flight.tier, tier.name, model, tier.deployment, Decision.TIMEOUT, None,
            tier.threshold, tokens[0], tokens[1], cost + _unanswered_cost(calls),
            self._clock() - flight.started, error="DeadlineExceeded: the run's deadline expired",
            answer=answer, label=label, members=members, calls=calls)

    def _skipped(self, index: int, tier: Tier) -> Attempt:
        return Attempt(index, tier.name, tier.model, tier.deployment, Decision.SKIP,
                       None, tier.threshold, error="the prompt does not fit the context window")

    def _too_long(self, request: Request) -> None:
        windows = [t.context_window or 0 for t in self.tiers]
        needed = estimate_message_tokens(request.messages) + min(t.max_tokens for t in self.tiers)
        raise PromptTooLongError(needed, max(windows))

    def _finish(self, state: _RunState, timed_out: bool, started: float, trace_id: str) -> Result:
        attempts = tuple(state.attempts)
        accepted = next((a for a in attempts if a.decision is Decision.ACCEPT), None)
        hops = [climb for _, _, climb in climbs(attempts)]
        if accepted is not None:
            answer, chosen, stop = accepted.answer or "", accepted, StopReason.ACCEPTED
        elif state.best is not None:
            tier_index, answer = state.best
            chosen = next(a for a in reversed(attempts) if a.tier == tier_index)
            stop = StopReason.DEADLINE if timed_out else state.stop or StopReason.EXHAUSTED
        elif state.stop is StopReason.BUDGET:
            raise BudgetExceededError(f"budget {state.budget_limit!r} ran out before any tier "
                                      "answered", attempts, limit=state.budget_limit)
        elif timed_out:  # (a grader's cost is lost with the run here: no Result to carry it)
            raise DeadlineExceededError("the deadline expired before any tier answered", attempts)
        else:
            raise NoAnswerError("every tier failed; see .attempts", attempts)
        return Result(
            answer=answer, accepted=accepted is not None, stop_reason=stop, tier=chosen.tier,
            tier_name=chosen.tier_name, model=chosen.model, confidence=chosen.confidence,
            attempts=attempts,
            cost=math.fsum([a.cost for a in attempts] + ([state.route.cost] if state.route else [])),
            latency_s=self._clock() - started, escalations=hops.count(Climb.ESCALATION),
            trace_id=trace_id, feature=self.feature, route=state.route,
            finish_reason=chosen.finish_reason, fallbacks=hops.count(Climb.FALLBACK))
