"""The per-request half of the glue between the engine and ``verifiers``: what an estimator
may call during one run (``sample(k)``, ``ask(messages)``) and the context it sees. Every
model call goes through the seam (``cascade.resilience.call_model``)."""

from __future__ import annotations

import math

import anyio

from cascade._ensemble import Called
from cascade._tier import Tier
from cascade.errors import ProviderError
from cascade.resilience import Resilience, RunScope, call_model
from cascade.types import CallPurpose, Completion, Message, ModelCall, Request
from verifiers import (
    Asked,
    AskFn,
    Candidate,
    EstimateContext,
    Peer,
    Sampled,
    SampleFn,
    Turn,
    Usage,
)


def default_scope() -> RunScope:
    """A scope of its own, for calls made outside a ``Cascade`` run (scripts, tests)."""
    return RunScope(Resilience())


def candidate(completion: Completion, index: int = 0) -> Candidate:
    choice = completion.choices[index]
    return Candidate(choice.text, completion.model, choice.token_logprobs)


def _sample_call(tier: Tier, request: Request, n: int, seed: int | None) -> ModelCall:
    base = tier.call_for(request)
    return ModelCall(base.model, base.messages, base.max_tokens, tier.sample_temperature,
                     base.stop, base.logprobs, base.top_logprobs, n, seed, request)


async def _concurrently(tier: Tier, calls: list[ModelCall], scope: RunScope) -> list[Completion]:
    """All calls at once; the first provider error is raised as itself (not as a group)
    after every call has finished."""
    results: list[Completion | None] = [None] * len(calls)
    errors: list[ProviderError] = []

    async def one(i: int) -> None:
        try:
            results[i] = await call_model(scope, tier.target, calls[i], CallPurpose.SAMPLE)
        except ProviderError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for i in range(len(calls)):
            group.start_soon(one, i)
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def sampler(tier: Tier, request: Request, scope: RunScope | None = None) -> SampleFn:
    """``sample(k)``: k more answers from the tier at its sampling temperature: one call with
    ``n=k`` where the provider supports it (topped up with single calls if the server returned
    fewer choices, as llama.cpp's server does), else k concurrent calls. Seeds run on across
    calls (the tier's own answer is seed 0), so repeated calls draw fresh samples."""
    drawn = 0
    scope = scope or default_scope()

    async def sample(k: int) -> Sampled:
        nonlocal drawn
        start, drawn = drawn + 1, drawn + k
        done: list[Completion] = []
        if tier.provider.supports_n and k > 1:
            done = await _concurrently(tier, [_sample_call(tier, request, k, start)], scope)
        have = sum(len(c.choices) for c in done)
        if have < k:
            calls = [_sample_call(tier, request, 1, start + i) for i in range(have, k)]
            done += await _concurrently(tier, calls, scope)
        candidates = tuple(candidate(c, j) for c in done for j in range(len(c.choices)))
        usage = Usage(len(done), sum(c.input_tokens for c in done),
                      sum(c.output_tokens for c in done), math.fsum(tier.cost_of(c) for c in done))
        return Sampled(candidates[:k], usage)

    return sample


def asker(rater: Tier, request: Request, scope: RunScope | None = None,
          purpose: CallPurpose = CallPurpose.RATER) -> AskFn:
    """``ask(messages)``: one call to the rating (or grading) tier's model, at its prices."""
    scope = scope or default_scope()

    async def ask(messages: tuple[Turn, ...]) -> Asked:
        base = rater.call_for(request)
        call = ModelCall(base.model, tuple(Message(t.role, t.content) for t in messages),
                         base.max_tokens, 0.0, (), False, 0, 1, None, request)
        completion = await call_model(scope, rater.target, call, purpose)
        usage = Usage(1, completion.input_tokens, completion.output_tokens, rater.cost_of(completion))
        return Asked(completion.text, usage)

    return ask


def estimate_context(tier: Tier, request: Request, called: Called, sample: SampleFn,
                     ask: AskFn | None = None, peers: tuple[Peer, ...] = ()) -> EstimateContext:
    """The estimator's view: the candidate carries the model as the policy names it (the key
    of learned agreement weights), not as the provider reports it."""
    query = tuple(Turn(m.role, m.content) for m in request.messages)
    chosen = candidate(called.completion)
    chosen = Candidate(chosen.text, called.source, chosen.token_logprobs)
    return EstimateContext(query, chosen, tier.name, sample, ask, peers, request.metadata)
