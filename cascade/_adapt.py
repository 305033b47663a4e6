"""Glue between the engine's types and the standalone ``verifiers`` package, and between
policy specs and live tiers. Pure construction; the only I/O is inside ``sample``."""

from __future__ import annotations

import math
from pathlib import Path

import anyio

from cascade._tier import Tier
from cascade.errors import ProviderConfigError, ProviderError
from cascade.policy import (
    CombineSpec,
    EstimatorSpec,
    LogprobSpec,
    Policy,
    Price,
    SelfRatingSpec,
    TierSpec,
    VerifierSpec,
    VoteSpec,
    estimator_kinds,
)
from cascade.policy import LlamaCppProvider as LlamaSpec
from cascade.policy import ReplayProvider as ReplaySpec
from cascade.providers import Provider, ProviderFactory, ReplayProvider
from cascade.types import Completion, Message, ModelCall, Request
from verifiers import (
    DEFAULT_RATING_PROMPT,
    AnswerKind,
    Asked,
    AskFn,
    Candidate,
    CombinedEstimator,
    Embed,
    EstimateContext,
    Estimator,
    Sampled,
    SampleFn,
    SelfConsistencyEstimator,
    SelfRatingEstimator,
    TokenLogprobEstimator,
    Turn,
    Usage,
)


def build_estimator(spec: EstimatorSpec | None, base_dir: Path) -> Estimator | None:
    match spec:
        case None:
            return None
        case LogprobSpec():
            return TokenLogprobEstimator(spec.statistic, spec.quantile)
        case VoteSpec():
            embed = _text_encoder() if spec.answer is AnswerKind.TEXT else None
            return SelfConsistencyEstimator(k=spec.samples, kind=spec.answer, early_stop=spec.early_stop,
                                            batch=spec.batch, similarity=spec.similarity, embed=embed)
        case VerifierSpec():
            from verifiers import load_verifier  # torch / sklearn: only when a policy uses one

            path = Path(spec.artifact).expanduser()
            return load_verifier(path if path.is_absolute() else base_dir / path)
        case SelfRatingSpec():
            return SelfRatingEstimator(spec.prompt or DEFAULT_RATING_PROMPT, spec.scale)
        case CombineSpec():
            members = tuple(build_estimator(m, base_dir) for m in spec.members)
            return CombinedEstimator(members, spec.method, spec.weights, spec.intercept)  # type: ignore[arg-type]
    raise TypeError(f"no estimator for {spec!r}")  # unreachable: the union is closed


def _text_encoder() -> Embed:
    from verifiers import shared_encoder  # the MiniLM encoder, loaded once per process on first use

    return shared_encoder().encode


def _rater(spec: TierSpec) -> str | None:
    """The tier that rates this tier's answers (self-rating), by name; None: the tier itself."""
    for kind in estimator_kinds(spec.estimator):
        if isinstance(kind, SelfRatingSpec):
            return kind.rater or spec.name
    return None


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


def build_tiers(policy: Policy, factory: ProviderFactory, base_dir: Path) -> list[Tier]:
    d = policy.defaults
    tiers = []
    for spec in policy.tiers:
        provider = _provider(spec, factory)
        estimator = build_estimator(spec.estimator, base_dir)
        if estimator is not None and "samples" in estimator.requires and not _can_sample(provider):
            raise ProviderConfigError(f"tier {spec.name!r}: {estimator.name} needs samples, and "
                                      f"{provider.deployment} records one answer per query")
        tiers.append(Tier(
            name=spec.name, model=spec.model, provider=provider,
            estimator=estimator, threshold=spec.threshold, price=spec.price,
            max_tokens=spec.max_tokens or d.max_tokens, timeout_s=spec.timeout_s or d.timeout_s,
            temperature=d.temperature if spec.temperature is None else spec.temperature,
            context_window=_context_window(spec, policy), system_prompt=spec.system_prompt,
            stop=spec.stop, logprobs=spec.logprobs, top_logprobs=spec.top_logprobs, n=spec.n,
            rater=_rater(spec),
        ))
    return tiers


def _can_sample(provider: Provider) -> bool:
    return not isinstance(provider, ReplayProvider) or provider.supports_n


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


def asker(rater: Tier, request: Request) -> AskFn:
    """``ask(messages)``: one call to the rating tier's model, costed at its prices."""

    async def ask(messages: tuple[Turn, ...]) -> Asked:
        base = rater.call_for(request)
        call = ModelCall(base.model, tuple(Message(t.role, t.content) for t in messages),
                         base.max_tokens, 0.0, (), False, 0, 1, None, request)
        completion = await rater.provider.complete(call)
        usage = Usage(1, completion.input_tokens, completion.output_tokens, rater.cost_of(completion))
        return Asked(completion.text, usage)

    return ask


def estimate_context(tier: Tier, request: Request, completion: Completion,
                     sample: SampleFn, ask: AskFn | None = None) -> EstimateContext:
    query = tuple(Turn(m.role, m.content) for m in request.messages)
    return EstimateContext(query, candidate(completion), tier.name, sample, ask)
