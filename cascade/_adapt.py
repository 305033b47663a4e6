"""Glue between the engine's types and the standalone ``verifiers`` package, and between
policy specs and live tiers. Pure construction; the only I/O is inside ``sample``."""

from __future__ import annotations

import math
import re
from pathlib import Path

import anyio

from cascade._ensemble import Called
from cascade._prices import tier_price
from cascade._tier import Member, Routing, Tier
from cascade.errors import ProviderConfigError, ProviderError, RouterArtifactError
from cascade.policy import (
    AgreementSpec,
    CausalRouterSpec,
    CombineSpec,
    GraderSpec,
    LearnedRouterSpec,
    RouterSpec,
    RulesRouterSpec,
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
from cascade.routing import (
    CausalLLMRouter,
    LearnedRouter,
    Router,
    RouteTier,
    RouteRule,
    Rule,
    RulesRouter,
    columns_for,
    load_router_model,
)
from cascade.types import Completion, Message, ModelCall, Request
from verifiers import (
    DEFAULT_RATING_PROMPT,
    AgreementEstimator,
    AnswerKind,
    Asked,
    AskFn,
    Candidate,
    CombinedEstimator,
    Embed,
    EstimateContext,
    Estimator,
    Peer,
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
                                            min_samples=min(3, spec.samples),
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
        case AgreementSpec():
            return _agreement(spec, base_dir)
    raise TypeError(f"no estimator for {spec!r}")  # unreachable: the union is closed


def _agreement(spec: AgreementSpec, base_dir: Path) -> AgreementEstimator:
    model = None
    if spec.artifact is not None:
        from verifiers import load_agreement

        path = Path(spec.artifact).expanduser()
        model = load_agreement(path if path.is_absolute() else base_dir / path)
        if model.kind is not spec.answer:
            raise ProviderConfigError(f"{path}: agreement weights learned for answer kind "
                                      f"{model.kind.value!r}, but the policy says {spec.answer.value!r}")
    embed = _text_encoder() if spec.answer is AnswerKind.TEXT else None
    return AgreementEstimator(spec.answer, spec.min_members, spec.earlier, dict(spec.weights),
                              model, spec.similarity, embed, spec.run_tests, spec.tests_timeout_s)


def _text_encoder() -> Embed:
    from verifiers import shared_encoder  # the MiniLM encoder, loaded once per process on first use

    return shared_encoder().encode


def _rater(spec: TierSpec) -> str | None:
    """The tier that rates this tier's answers (self-rating), by name; None: the tier itself."""
    for kind in [*estimator_kinds(spec.estimator), *estimator_kinds(spec.fallback_estimator)]:
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


def _provider(spec: TierSpec, factory: ProviderFactory, model: str | None = None,
              provider_spec: object = None, price: Price | None = None) -> Provider:
    provider = factory.build(provider_spec or spec.provider, model or spec.display_model)  # type: ignore[arg-type]
    if isinstance(provider, ReplayProvider) and not provider.table.has_costs and (price or spec.price) == Price():
        raise ProviderConfigError(
            f"tier {spec.name!r}: {provider.table.path} records no costs; set the tier's "
            "price (input_per_1m / output_per_1m) so that its calls are costed from tokens")
    return provider


def _members(spec: TierSpec, factory: ProviderFactory) -> tuple[Member, ...]:
    """An ensemble's members, each on its own provider or the tier's (a member that is not in
    the tier's replay data fails here, at load)."""
    return tuple(Member(m.model, _provider(spec, factory, m.model, m.provider, m.price),
                        m.price or spec.price) for m in spec.members)


def build_tiers(policy: Policy, factory: ProviderFactory, base_dir: Path) -> list[Tier]:
    d = policy.defaults
    tiers = []
    for spec in policy.tiers:
        members = _members(spec, factory)
        provider = members[0].provider if members else _provider(spec, factory)
        estimator = build_estimator(spec.estimator, base_dir)
        if estimator is not None and "samples" in estimator.requires and not _can_sample(provider):
            raise ProviderConfigError(f"tier {spec.name!r}: {estimator.name} needs samples, and "
                                      f"{provider.deployment} records one answer per query")
        tiers.append(Tier(
            name=spec.name, model=spec.display_model, provider=provider,
            estimator=estimator, threshold=spec.accept_at, price=tier_price(spec, d).price,
            max_tokens=spec.max_tokens or d.max_tokens, timeout_s=spec.timeout_s or d.timeout_s,
            temperature=d.temperature if spec.temperature is None else spec.temperature,
            context_window=_context_window(spec, policy), system_prompt=spec.system_prompt,
            stop=spec.stop, logprobs=spec.logprobs, top_logprobs=spec.top_logprobs, n=spec.n,
            rater=_rater(spec), members=members,
            consensus=estimator if members and isinstance(estimator, AgreementEstimator) else None,
            accept_truncated=spec.accept_truncated, degeneracy_checks=spec.degeneracy_checks,
            fallback_estimator=build_estimator(spec.fallback_estimator, base_dir),
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


def estimate_context(tier: Tier, request: Request, called: Called, sample: SampleFn,
                     ask: AskFn | None = None, peers: tuple[Peer, ...] = ()) -> EstimateContext:
    """The estimator's view: the candidate carries the model as the policy names it (the key
    of learned agreement weights), not as the provider reports it."""
    query = tuple(Turn(m.role, m.content) for m in request.messages)
    chosen = candidate(called.completion)
    chosen = Candidate(chosen.text, called.source, chosen.token_logprobs)
    return EstimateContext(query, chosen, tier.name, sample, ask, peers, request.metadata)


# --- routing -----------------------------------------------------------------------------------


def build_routing(policy: Policy, tiers: list[Tier], factory: ProviderFactory,
                  base_dir: Path) -> Routing | None:
    if policy.routing is None:
        return None
    spec = policy.routing.router
    index = {t.name: i for i, t in enumerate(tiers)}
    default = index[spec.default_tier] if spec.default_tier else len(tiers) - 1
    grader = None
    if isinstance(spec, CausalRouterSpec):
        grader = _grader(spec.grader, tiers, index, factory, policy)
    router = build_router(spec, tiers, index, default, base_dir)
    return Routing(router, policy.routing.mode, spec.timeout_s, spec.max_chars, grader)


def build_router(spec: RouterSpec, tiers: list[Tier], index: dict[str, int], default: int,
                 base_dir: Path) -> Router:
    match spec:
        case RulesRouterSpec():
            rules = tuple(Rule(r.name or f"rule-{i + 1}", index[r.start], r.min_chars, r.max_chars,
                               r.keywords, re.compile(r.regex) if r.regex else None, dict(r.metadata))
                          for i, r in enumerate(spec.rules))
            return RulesRouter(rules, default)
        case LearnedRouterSpec():
            cold = index[spec.cold_start_tier] if spec.cold_start_tier else None
            return _learned(spec, tiers, default, cold, base_dir)
        case CausalRouterSpec():
            starts = tuple(index[name] for name in spec.levels)
            return CausalLLMRouter(starts, default, spec.prompt or CausalLLMRouter.prompt)
    raise TypeError(f"no router for {spec!r}")  # unreachable: the union is closed


def _learned(spec: LearnedRouterSpec, tiers: list[Tier], default: int, cold: int | None,
             base_dir: Path) -> LearnedRouter:
    path = Path(spec.artifact).expanduser()
    path = path if path.is_absolute() else base_dir / path
    model = load_router_model(path)
    if model.kind.value != spec.kind:
        raise RouterArtifactError(f"{path}: a {model.kind.value} router artifact, but the policy "
                                  f"says kind {spec.kind!r}")
    named = [RouteTier(t.name, spec.models.get(t.name, t.model)) for t in tiers]
    columns = columns_for(model, named, str(path))
    thresholds = spec.threshold if isinstance(spec.threshold, tuple) else (spec.threshold,) * len(tiers)
    cut = spec.min_similarity if spec.min_similarity is not None else model.min_similarity
    return LearnedRouter(model, columns, thresholds, default, _text_encoder(),
                         cut if spec.cold_start else None, RouteRule(spec.rule), spec.cost_weight,
                         cold_start_tier=cold)


def _grader(grader: str | GraderSpec, tiers: list[Tier], index: dict[str, int],
            factory: ProviderFactory, policy: Policy) -> Tier:
    if isinstance(grader, str):
        return tiers[index[grader]]
    return Tier(name="grader", model=grader.model, provider=factory.build(grader.provider, grader.model),
                price=grader.price, max_tokens=grader.max_tokens,
                timeout_s=policy.defaults.timeout_s, temperature=0.0)
