"""``Cascade.stream``: the answer as text deltas, then the run's ``Result``.

Two modes:
- after acceptance (the default): the cascade runs as ``Cascade.run`` does; the accepted (or
  best) answer is then sent as deltas. The first delta waits for the whole climb.
- live (``live=True``): the tiers below the last run as usual; when none accepts, the last
  tier's tokens are sent as the upstream produces them. Only when nothing judges the last tier
  (no estimator, or a threshold of 0) and its one model can stream (an OpenAI-compatible
  provider): a streamed answer cannot be taken back. The first token comes sooner; the price
  is that the last tier's answer is never checked and a stream cut after its first bytes is an
  error (``StreamInterruptedError`` / ``StreamStalledError``), never retried or failed over.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import re
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from cascade._request import PromptLike, check_deadline, make_request
from cascade._tier import Tier
from cascade.errors import (
    CascadeError,
    DeadlineExceededError,
    InvalidRequestError,
    NoAnswerError,
    PromptTooLongError,
    ProviderError,
    StreamInterruptedError,
    StreamStalledError,
)
from cascade.policy import RoutingMode
from cascade.providers import estimate_message_tokens
from cascade.providers._sse import DeltaSink
from cascade.resilience import Deployment, Resilience, RunScope, Target, call_model
from cascade.types import (
    Attempt,
    CallPurpose,
    Completion,
    Decision,
    ModelCall,
    Request,
    Result,
    StopReason,
)

if TYPE_CHECKING:
    from cascade.engine import Cascade

__all__ = ["CascadeStream", "Delta", "Done", "StreamItem", "StreamStateError", "can_stream_live",
           "split_deltas"]

_PIECE = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer's text, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class Done:
    """The last item: the run's full record (``result.answer`` is every delta joined)."""

    result: Result


StreamItem = Delta | Done


class StreamStateError(CascadeError):
    """The stream was used out of order (iterated outside ``async with``, or ``.result`` read
    before the ``Done`` item)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    metadata: Mapping[str, str] | None = None
    deadline_s: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: Sequence[str] | None = None


@runtime_checkable
class StreamingProvider(Protocol):
    deployment: str
    supports_n: bool

    async def stream(self, call: ModelCall, sink: DeltaSink, *,
                     idle_timeout_s: float | None = None) -> Completion: ...


def split_deltas(text: str) -> list[str]:
    """An answer cut into word-sized deltas (joined, they are the answer exactly)."""
    return _PIECE.findall(text)


def can_stream_live(tier: Tier) -> str | None:
    """Why ``tier`` cannot be streamed live (None: it can)."""
    if tier.members:
        return f"tier {tier.name!r} is an ensemble"
    if tier.estimator is not None and not (tier.threshold is not None and tier.threshold <= 0):
        return f"tier {tier.name!r} has an estimator that must judge its whole answer"
    if not all(isinstance(p, StreamingProvider) for p in tier.providers):
        return f"tier {tier.name!r} has a provider that cannot stream"
    return None


# --- the live call through the seam ------------------------------------------------------------

_SINK: contextvars.ContextVar[DeltaSink] = contextvars.ContextVar("cascade_stream_sink")
_LIVE: weakref.WeakKeyDictionary[Resilience, dict[int, _Live]] = weakref.WeakKeyDictionary()


class _Live:
    """A streaming provider seen by the call seam as a plain one: ``complete`` streams into the
    sink of the current task and returns the whole completion. It shares the provider's
    breaker, bulkhead and latency state."""

    def __init__(self, inner: StreamingProvider, idle_timeout_s: float) -> None:
        self.inner = inner
        self.deployment = inner.deployment
        self.supports_n = False
        self._idle = idle_timeout_s

    async def complete(self, call: ModelCall) -> Completion:
        return await self.inner.stream(call, _SINK.get(), idle_timeout_s=self._idle)

    async def check(self) -> None:
        await self.inner.check()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """The inner provider belongs to the cascade's factory, which closes it."""


def _live_target(resilience: Resilience, tier: Tier) -> Target:
    views = _LIVE.setdefault(resilience, {})
    deployments = []
    for d in tier.target.deployments:
        view = views.get(id(d.provider))
        if view is None:
            view = views[id(d.provider)] = _Live(d.provider, tier.timeout_s)  # type: ignore[arg-type]
            resilience.share_state(view, d.provider)
        deployments.append(Deployment(view, d.weight, d.context_window))  # type: ignore[arg-type]
    t = tier.target
    # no hedging (two streams cannot both reach the caller); the tier's timeout bounds each
    # wait for a chunk instead of the whole answer
    return Target(tuple(deployments), t.cost_of, math.inf, t.strategy, price_in=t.price_in,
                  price_out=t.price_out)


# --- the stream object --------------------------------------------------------------------------


class CascadeStream:
    """``async with cascade.stream(prompt) as s: async for item in s: ...`` yields ``Delta``
    items then one ``Done``; ``s.result`` is the ``Result`` once ``Done`` was yielded. A run
    error (``NoAnswerError``, a typed request error, ``StreamInterruptedError``...) is raised by
    the iteration, after the deltas sent before it."""

    def __init__(self, cascade: Cascade, prompt: PromptLike, options: RunOptions, *,
                 live: bool = False) -> None:
        self._cascade = cascade
        self._prompt = prompt
        self._options = options
        self._live = live
        self._result: Result | None = None
        self._error: CascadeError | None = None
        self._group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[StreamItem] | None = None

    async def __aenter__(self) -> CascadeStream:  # noqa: PYI034 - final in practice
        send, self._receive = anyio.create_memory_object_stream[StreamItem](64)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._produce, send)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._group is not None and self._receive is not None
        self._group.cancel_scope.cancel()  # a caller that stopped early: stop the upstream
        self._receive.close()
        # the body's own exception (if any) propagates as itself, not inside a group
        await self._group.__aexit__(None, None, None)
        return None

    def __aiter__(self) -> AsyncIterator[StreamItem]:
        if self._receive is None:
            raise StreamStateError("use the stream inside `async with cascade.stream(...)`")
        return self._items(self._receive)

    async def _items(self, receive: MemoryObjectReceiveStream[StreamItem]
                     ) -> AsyncIterator[StreamItem]:
        async for item in receive:
            yield item
        if self._error is not None:
            raise self._error

    @property
    def result(self) -> Result:
        if self._result is None:
            raise StreamStateError("the stream has not finished (no Done item yet)")
        return self._result

    async def _produce(self, send: MemoryObjectSendStream[StreamItem]) -> None:
        async with send:
            async def sink(text: str) -> None:
                await send.send(Delta(text))
            try:
                result = await (self._run_live(sink) if self._live else self._run(sink))
            except CascadeError as exc:
                self._error = exc
                return
            self._result = result
            await send.send(Done(result))

    async def _run(self, sink: DeltaSink) -> Result:
        o = self._options
        result = await self._cascade.run(self._prompt, metadata=o.metadata,
                                         deadline_s=o.deadline_s, max_tokens=o.max_tokens,
                                         temperature=o.temperature, stop=o.stop)
        for piece in split_deltas(result.answer):
            await sink(piece)
        return result

    async def _run_live(self, sink: DeltaSink) -> Result:
        cascade, o = self._cascade, self._options
        last = cascade.tiers[-1]
        if cascade.routing is not None and cascade.routing.mode is not RoutingMode.CASCADE:
            raise InvalidRequestError("live streaming needs a policy without routing "
                                      "(routing.mode cascade); stream after acceptance instead")
        why = can_stream_live(last)
        if why is not None:
            raise InvalidRequestError(f"live streaming is not possible: {why}")
        deadline = check_deadline(cascade.deadline_s if o.deadline_s is None else o.deadline_s)
        request = make_request(self._prompt, cascade.feature, o.metadata,
                               max_tokens=o.max_tokens, temperature=o.temperature, stop=o.stop)
        started = cascade.resilience.clock()
        earlier, sub = await self._below(request, deadline)
        if sub is not None and (sub.accepted or sub.stop_reason is not StopReason.EXHAUSTED):
            for piece in split_deltas(sub.answer):  # answered below, or the climb must stop
                await sink(piece)
            return sub
        if not last.fits(request.messages, request.max_tokens):
            if sub is not None:
                for piece in split_deltas(sub.answer):
                    await sink(piece)
                return sub
            needed = estimate_message_tokens(request.messages) + (request.max_tokens
                                                                  or last.max_tokens)
            raise PromptTooLongError(needed, max(t.context_window or 0 for t in cascade.tiers))
        left = None if deadline is None else deadline - (cascade.resilience.clock() - started)
        return await _stream_last(cascade, last, request, earlier, sub, left, started, sink)

    async def _below(self, request: Request, deadline: float | None
                     ) -> tuple[tuple[Attempt, ...], Result | None]:
        """Every tier but the last, as a cascade of its own (same resilience state)."""
        from cascade.engine import Cascade

        cascade, o = self._cascade, self._options
        below = [t for t in cascade.tiers[:-1] if t.fits(request.messages, request.max_tokens)]
        if not below:
            return (), None
        sub = Cascade(cascade.tiers[:-1], feature=cascade.feature, deadline_s=deadline,
                      resilience=cascade.resilience)
        try:
            result = await sub.run(request.messages, metadata=o.metadata, max_tokens=o.max_tokens,
                                   temperature=o.temperature, stop=o.stop)
        except NoAnswerError as exc:  # every lower tier failed: the last one may answer
            return tuple(_escalated(a) for a in exc.attempts), None
        except PromptTooLongError:
            return (), None
        return tuple(_escalated(a) for a in result.attempts), result


def _escalated(attempt: Attempt) -> Attempt:
    """The lower cascade's last tier rejected what the full cascade escalates."""
    if attempt.decision is Decision.REJECT:
        return dataclasses.replace(attempt, decision=Decision.ESCALATE)
    return attempt


async def _stream_last(cascade: Cascade, tier: Tier, request: Request,
                       earlier: tuple[Attempt, ...], sub: Result | None, left: float | None,
                       started: float, sink: DeltaSink) -> Result:
    r = cascade.resilience
    index = len(cascade.tiers) - 1
    scope = RunScope(r, cascade.feature, request.metadata,
                     None if left is None else r.clock() + left)
    began = r.clock()
    token = _SINK.set(sink)
    try:
        with anyio.fail_after(math.inf if left is None else max(left, 0.0)):
            completion = await call_model(scope, _live_target(r, tier), tier.call_for(request),
                                          CallPurpose.TIER, patient=True)
    except TimeoutError:
        raise DeadlineExceededError("the deadline expired while the last tier streamed",
                                    earlier) from None
    except (StreamInterruptedError, StreamStalledError):
        raise  # the caller has part of the answer: nothing else can be sent
    except ProviderError as exc:  # nothing was sent: as Cascade.run would end
        failed = Attempt(index, tier.name, tier.model, tier.deployment, Decision.ERROR, None,
                         tier.threshold, cost=math.fsum(e.cost for e in scope.events),
                         latency_s=r.clock() - began, error=f"{type(exc).__name__}: {exc}",
                         calls=tuple(scope.events))
        if sub is None:
            raise NoAnswerError("every tier failed; see .attempts", (*earlier, failed)) from exc
        for piece in split_deltas(sub.answer):
            await sink(piece)
        return dataclasses.replace(sub, attempts=(*earlier, failed),
                                   cost=sub.cost + failed.cost, escalations=sub.escalations + 1)
    finally:
        _SINK.reset(token)
    choice = completion.choices[0]
    truncated = choice.truncated and not tier.accept_truncated
    attempt = Attempt(index, tier.name, tier.model, scope.events[-1].deployment
                      if scope.events else tier.deployment,
                      Decision.REJECT if truncated else Decision.ACCEPT, None, tier.threshold,
                      completion.input_tokens, completion.output_tokens,
                      math.fsum(e.cost for e in scope.events), r.clock() - began,
                      answer=choice.text, calls=tuple(scope.events),
                      finish_reason=choice.finish_reason)
    attempts = (*earlier, attempt)
    tried = [a for a in attempts if a.decision is not Decision.SKIP]
    return Result(
        answer=choice.text, accepted=not truncated,
        stop_reason=StopReason.EXHAUSTED if truncated else StopReason.ACCEPTED, tier=index,
        tier_name=tier.name, model=completion.model, confidence=None, attempts=attempts,
        cost=math.fsum(a.cost for a in attempts), latency_s=r.clock() - started,
        escalations=max(0, len(tried) - 1), trace_id=sub.trace_id if sub else "",
        feature=cascade.feature, finish_reason=choice.finish_reason)

