"""Glue between the engine's types and the standalone ``verifiers`` package, and between
policy specs and live tiers. Pure construction; the only I/O is inside ``sample``."""

from __future__ import annotations

import math

import anyio

from cascade._tier import Tier
from cascade.errors import ProviderConfigError, ProviderError
from cascade.policy import EstimatorSpec, LogprobEstimator, Policy, Price, TierSpec
from cascade.policy import LlamaCppProvider as LlamaSpec
from cascade.policy import ReplayProvider as ReplaySpec
from cascade.providers import Provider, ProviderFactory, ReplayProvider
from cascade.types import Completion, ModelCall, Request
from verifiers import (
    Candidate,
    EstimateContext,
    Estimator,
    Sampled,
    SampleFn,
    TokenLogprobEstimator,
    Turn,
    Usage,
)


def build_estimator(spec: EstimatorSpec | None) -> Estimator | None:
    match spec:
        case None:
            return None
        case LogprobEstimator():
            return TokenLogprobEstimator(spec.statistic, spec.quantile)
    raise TypeError(f"no estimator for {spec!r}")  # unreachable: the union is closed


def _context_window(spec: TierSpec, policy: Policy) -> int | None:
    if spec.context_window is not None:
        return spec.context_window
    match spec.provider:
        case LlamaSpec():
            return spec.provider.n_ctx
        case ReplaySpec():
            return None
    return policy.defaults.context_window


def _provider(spec: TierSpec, factory: ProviderFactory) -> Provider:
    provider = factory.build(spec.provider, spec.model)
    if isinstance(provider, ReplayProvider) and not provider.table.has_costs and spec.price == Price():
        raise ProviderConfigError(
            f"tier {spec.name!r}: {provider.table.path} records no costs; set the tier's "
            "price (input_per_1m / output_per_1m) so that its calls are costed from tokens")
    return provider


def build_tiers(policy: Policy, factory: ProviderFactory) -> list[Tier]:
    d = policy.defaults
    return [
        Tier(
            name=spec.name, model=spec.model, provider=_provider(spec, factory),
            estimator=build_estimator(spec.estimator), threshold=spec.threshold, price=spec.price,
            max_tokens=spec.max_tokens or d.max_tokens, timeout_s=spec.timeout_s or d.timeout_s,
            temperature=d.temperature if spec.temperature is None else spec.temperature,
            context_window=_context_window(spec, policy), system_prompt=spec.system_prompt,
            stop=spec.stop, logprobs=spec.logprobs, top_logprobs=spec.top_logprobs, n=spec.n,
        )
        for spec in policy.tiers
    ]


def candidate(completion: Completion, index: int = 0) -> Candidate:
    choice = completion.choices[index]
    return Candidate(choice.text, completion.model, choice.token_logprobs)


def _sample_call(tier: Tier, request: Request, n: int, seed: int | None) -> ModelCall:
    base = tier.call_for(request)
    return ModelCall(base.model, base.messages, base.max_tokens, tier.sample_temperature,
                     base.stop, base.logprobs, base.top_logprobs, n, seed, request)


async def _concurrently(tier: Tier, calls: list[ModelCall]) -> list[Completion]:
    """All calls at once; the first provider error is raised as itself (not as a group)
    after every call has finished."""
    results: list[Completion | None] = [None] * len(calls)
    errors: list[ProviderError] = []

    async def one(i: int) -> None:
        try:
            results[i] = await tier.provider.complete(calls[i])
        except ProviderError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for i in range(len(calls)):
            group.start_soon(one, i)
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def sampler(tier: Tier, request: Request) -> SampleFn:
    """``sample(k)``: k more answers from the tier at its sampling temperature: one call with
    ``n=k`` where the provider supports it (topped up with single calls if the server returned
    fewer choices, as llama.cpp's server does), else k concurrent calls. Seeds run on across
    calls (the tier's own answer is seed 0), so repeated calls draw fresh samples."""
    drawn = 0

    async def sample(k: int) -> Sampled:
        nonlocal drawn
        start, drawn = drawn + 1, drawn + k
        done: list[Completion] = []
        if tier.provider.supports_n and k > 1:
            done = await _concurrently(tier, [_sample_call(tier, request, k, start)])
        have = sum(len(c.choices) for c in done)
        if have < k:
            calls = [_sample_call(tier, request, 1, start + i) for i in range(have, k)]
            done += await _concurrently(tier, calls)
        candidates = tuple(candidate(c, j) for c in done for j in range(len(c.choices)))
        usage = Usage(len(done), sum(c.input_tokens for c in done),
                      sum(c.output_tokens for c in done), math.fsum(tier.cost_of(c) for c in done))
        return Sampled(candidates[:k], usage)

    return sample


def estimate_context(tier: Tier, request: Request, completion: Completion,
                     sample: SampleFn) -> EstimateContext:
    query = tuple(Turn(m.role, m.content) for m in request.messages)
    return EstimateContext(query, candidate(completion), tier.name, sample)
