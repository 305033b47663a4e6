"""The build half: policy specs into live tiers, estimators and routing (pure construction,
once per ``Cascade``). The per-request half — ``sample``, ``ask``, the estimator's context —
is in ``cascade._calls``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from cascade._prices import tier_price
from cascade._tier import Member, Routing, Tier
from cascade.errors import (
    ConfigError,
    ProviderConfigError,
    RouterArtifactError,
    VerifierArtifactError,
)
from cascade.policy import (
    AgreementSpec,
    ArithmeticSpec,
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
    UnifiedSpec,
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
from cascade.routing._unified import AnswerKey, UnifiedSettings, fitted_key, load_unified
from cascade.resilience import Deployment
from verifiers import (
    DEFAULT_RATING_PROMPT,
    AgreementEstimator,
    AnswerKind,
    ArithmeticEstimator,
    ArtifactError,
    CombinedEstimator,
    Embed,
    Estimator,
    EstimatorError,
    SelfConsistencyEstimator,
    SelfRatingEstimator,
    TokenLogprobEstimator,
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
            try:
                return load_verifier(path if path.is_absolute() else base_dir / path, sha256=spec.sha256)
            except ArtifactError as exc:
                raise VerifierArtifactError(exc.path, exc.problem) from None
        case SelfRatingSpec():
            return SelfRatingEstimator(spec.prompt or DEFAULT_RATING_PROMPT, spec.scale)
        case CombineSpec():
            members = tuple(build_estimator(m, base_dir) for m in spec.members)
            return CombinedEstimator(members, spec.method, spec.weights, spec.intercept)  # type: ignore[arg-type]
        case AgreementSpec():
            return _agreement(spec, base_dir)
        case ArithmeticSpec():
            return ArithmeticEstimator()
    raise TypeError(f"no estimator for {spec!r}")  # unreachable: the union is closed


def _agreement(spec: AgreementSpec, base_dir: Path) -> AgreementEstimator:
    model = None
    if spec.artifact is not None:
        from verifiers import load_agreement

        path = Path(spec.artifact).expanduser()
        try:
            model = load_agreement(path if path.is_absolute() else base_dir / path, sha256=spec.sha256)
        except ArtifactError as exc:
            raise VerifierArtifactError(exc.path, exc.problem) from None
        if model.kind is not spec.answer:
            raise ProviderConfigError(f"{path}: agreement weights learned for answer kind "
                                      f"{model.kind.value!r}, but the policy says {spec.answer.value!r}")
    embed = _text_encoder() if spec.answer is AnswerKind.TEXT else None
    try:
        return AgreementEstimator(spec.answer, spec.min_members, spec.earlier, dict(spec.weights),
                                  model, spec.similarity, embed, spec.run_tests, spec.tests_timeout_s)
    except EstimatorError as exc:  # run_tests without a usable sandbox (bubblewrap)
        raise ConfigError(str(exc)) from None


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
    if isinstance(provider, ReplayProvider) and not provider.table.has_costs \
            and not provider.table.has_responses and provider.output_tokens is None:
        raise ProviderConfigError(
            f"tier {spec.name!r}: {provider.table.path} records neither answers nor costs; set the "
            "replay provider's output_tokens (billed per answer) so that its calls are not costed "
            "as if they generated nothing")
    return provider


def _members(spec: TierSpec, factory: ProviderFactory) -> tuple[Member, ...]:
    """An ensemble's members, each on its own provider or the tier's (a member that is not in
    the tier's replay data fails here, at load)."""
    return tuple(Member(m.model, _provider(spec, factory, m.model, m.provider, m.price),
                        m.price or spec.price, m.name) for m in spec.members)


def _deployments(spec: TierSpec, factory: ProviderFactory) -> tuple[Deployment, ...]:
    """A one-model tier's deployments (a single `provider` is one deployment)."""
    return tuple(Deployment(_provider(spec, factory, provider_spec=d.provider), d.weight,
                            d.context_window) for d in spec.deployment_specs)


def build_tiers(policy: Policy, factory: ProviderFactory, base_dir: Path) -> list[Tier]:
    d = policy.defaults
    tiers = []
    for spec in policy.tiers:
        members = _members(spec, factory)
        deployments = () if members else _deployments(spec, factory)
        provider = members[0].provider if members else deployments[0].provider
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
            deployments=deployments if spec.deployments else (),
            load_balancing=spec.load_balancing, on_unavailable=spec.on_unavailable,
            on_content_filter=spec.on_content_filter, hedge=spec.hedge,
            accept_truncated=spec.accept_truncated, degeneracy_checks=spec.degeneracy_checks,
            fallback_estimator=build_estimator(spec.fallback_estimator, base_dir),
        ))
    return tiers


def _can_sample(provider: Provider) -> bool:
    return not isinstance(provider, ReplayProvider) or provider.supports_n


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
    unified = None
    if policy.routing.unified is not None and isinstance(spec, LearnedRouterSpec):
        unified = _unified(policy.routing.unified, spec, tiers, base_dir)
    return Routing(router, policy.routing.mode, spec.timeout_s, spec.max_chars, grader, unified)


def _unified(spec: UnifiedSpec, router: LearnedRouterSpec, tiers: list[Tier],
             base_dir: Path) -> UnifiedSettings:
    path = Path(spec.artifact).expanduser()
    path = path if path.is_absolute() else base_dir / path
    model = load_unified(path).subset([router.models.get(t.name, t.model) for t in tiers])
    if spec.max_calls is not None:
        model = dataclasses.replace(model, max_calls=min(spec.max_calls, len(tiers)))
    key = AnswerKey.of(spec.answer, spec.check_arithmetic)
    fitted = fitted_key(path)
    if fitted is not None and fitted != key:
        raise RouterArtifactError(
            f"{path}: fitted with {fitted.describe()}, but routing.unified says {key.describe()}: "
            "its weights learned what a group and \"no answer\" mean under the fitted key; refit "
            "with cascade train-router --kind unified, or set `answer` / `check_arithmetic` back")
    return UnifiedSettings(model, spec.cost_weight, key)


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
    model = load_router_model(path, sha256=spec.sha256)
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
