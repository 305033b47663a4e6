"""One exception tree. Every error the library raises on purpose is a ``CascadeError``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from cascade.types import Attempt


class CascadeError(Exception):
    """Base class of every error raised by cascade."""


# --- configuration: the policy file and what it names ----------------------------------


class ConfigError(CascadeError):
    """The configuration cannot be used; nothing was run."""


class PolicyNotFoundError(ConfigError):
    def __init__(self, feature: str, path: Path) -> None:
        self.feature = feature
        self.path = path
        super().__init__(f"no policy for feature {feature!r}: {path} does not exist")


class InvalidFeatureError(ConfigError):
    def __init__(self, feature: str) -> None:
        self.feature = feature
        super().__init__(
            f"invalid feature name {feature!r}: use lower-case letters, digits, '-' and '_'"
        )


class PolicyIssue:
    """One problem in a policy file: where (key path, line) and what."""

    __slots__ = ("key_path", "line", "message")

    def __init__(self, key_path: str, line: int | None, message: str) -> None:
        self.key_path = key_path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "line ?"
        key = self.key_path or "(top level)"
        return f"{key} ({where}): {self.message}"

    def __repr__(self) -> str:
        return f"PolicyIssue({self.key_path!r}, {self.line!r}, {self.message!r})"


class PolicyError(ConfigError):
    """A policy file is malformed or invalid. ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: Sequence[PolicyIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"invalid policy {source}:\n{lines}")


class MissingSecretError(PolicyError):
    """A ``${VAR}`` in the policy names an environment variable that is not set."""

    def __init__(self, source: str, variable: str, key_path: str, line: int | None) -> None:
        self.variable = variable
        issue = PolicyIssue(key_path, line, f"environment variable {variable} is not set")
        super().__init__(source, [issue])


class ProviderConfigError(ConfigError):
    """A provider cannot be built from its settings (missing model file, package...)."""


class LogprobsUnavailableError(ProviderConfigError):
    """A tier's estimator needs token logprobs and its upstream returned none (some
    OpenAI-compatible servers never do). Raised at the first such answer instead of escalating
    every request; give the tier a ``fallback_estimator`` (or another estimator) to serve it."""

    def __init__(self, tier: str, deployment: str, estimator: str) -> None:
        self.tier = tier
        self.deployment = deployment
        self.estimator = estimator
        super().__init__(
            f"tier {tier!r}: estimator {estimator} needs token logprobs and {deployment} "
            "returned none; set `fallback_estimator:` on the tier (e.g. {kind: self_rating}), "
            "use another estimator, or set `supports_logprobs: false` on the provider")


class ReplayDataError(ConfigError):
    """Recorded data cannot be read: names the file, the row and the column."""

    def __init__(
        self, path: str | Path, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        self.path = str(path)
        self.row = row
        self.column = column
        where = self.path
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class RoutingDataError(ConfigError):
    """Router training data cannot be used (a model column missing, an empty query, one
    label only): names the file and, where there is one, the row and the model."""

    def __init__(self, source: str | Path, message: str, *, row: int | None = None) -> None:
        self.source = str(source)
        self.row = row
        where = self.source if row is None else f"{self.source}, row {row}"
        super().__init__(f"{where}: {message}")


class RouterArtifactError(ConfigError):
    """A router artifact that does not fit the policy (e.g. trained for other models)."""


class VerifierArtifactError(ConfigError):
    """A verifier or agreement-weights artifact named by the policy cannot be loaded safely
    (missing, tampered, unlisted files, not the pinned digest): ``verifiers.ArtifactError``
    as a cascade error. ``path`` names the file, ``problem`` says what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


# --- requests ----------------------------------------------------------------------------


class RequestError(CascadeError):
    """The request cannot be served by any tier; no model was called."""


class InvalidRequestError(RequestError):
    """The prompt is neither a string nor a list of {role, content} messages."""


class EmptyPromptError(RequestError):
    def __init__(self) -> None:
        super().__init__("the prompt is empty")


class PromptTooLongError(RequestError):
    def __init__(self, estimated_tokens: int, largest_window: int) -> None:
        self.estimated_tokens = estimated_tokens
        self.largest_window = largest_window
        super().__init__(
            f"the prompt (~{estimated_tokens} tokens with the answer budget) does not fit any "
            f"tier's context window (largest: {largest_window} tokens)"
        )


# --- providers: the error taxonomy ---------------------------------------------------------
#
# Each class carries its rule (docs/errors.md has the table):
#   retryable        retry the same deployment (tenacity, backoff with full jitter, honouring
#                    ``retry_after_s``), within the retry budget and the run's deadline
#   breaker_failure  counts as a failure in the deployment's circuit breaker
#   fallback         try the next healthy deployment of the tier, then the next tier
# Messages and reprs never contain a secret: providers redact the tier's key and header values
# from upstream text before building an error.


class ProviderError(CascadeError):
    """A model call failed. ``deployment`` names the endpoint, never a secret."""

    retryable: ClassVar[bool] = False
    breaker_failure: ClassVar[bool] = True
    fallback: ClassVar[bool] = True

    def __init__(self, deployment: str, message: str, *, retry_after_s: float | None = None) -> None:
        self.deployment = deployment
        self.retry_after_s = retry_after_s  # the upstream's Retry-After, in seconds from now
        super().__init__(f"{deployment}: {message}")


class ProviderUnreachableError(ProviderError):
    """Could not connect (refused, DNS, TLS)."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The connection broke during the call (reset, closed mid-response, truncated body)."""

    retryable = True


class ProviderTimeoutError(ProviderError):
    """No answer in time. ``phase``: ``connect``, ``read`` or ``total`` (the tier's timeout)."""

    retryable = True

    def __init__(self, deployment: str, message: str, *, phase: str = "total",
                 retry_after_s: float | None = None) -> None:
        self.phase = phase
        super().__init__(deployment, message, retry_after_s=retry_after_s)


class ProviderHTTPError(ProviderError):
    """An HTTP error status not covered by a subclass (e.g. 404, 409, 422)."""

    breaker_failure = False

    def __init__(self, deployment: str, status: int, detail: str, *,
                 retry_after_s: float | None = None) -> None:
        self.status = status
        self.detail = detail
        super().__init__(deployment, f"HTTP {status}: {detail}", retry_after_s=retry_after_s)


class RateLimitedError(ProviderHTTPError):
    """429: slow down. Retried no sooner than ``retry_after_s``; the deployment cools down."""

    retryable = True


class QuotaExhaustedError(ProviderHTTPError):
    """429 that says the quota / spend limit is used up: never retried; the deployment is out
    until its cooldown ends."""


class OverloadedError(ProviderHTTPError):
    """529 / 503: the upstream is overloaded."""

    retryable = True
    breaker_failure = True


class ServerError(ProviderHTTPError):
    """Any other 5xx."""

    retryable = True
    breaker_failure = True


class AuthenticationError(ProviderHTTPError):
    """401 / 403: never retried; the deployment is taken out (its breaker forced open) and the
    failure is logged loudly."""


class BadRequestError(ProviderHTTPError):
    """400 (or 404/422 about the request): never retried; the next tier may accept it."""


class ContextLengthExceededError(BadRequestError):
    """The prompt does not fit this model's window: never retried on the same deployment; only
    a deployment or tier with a larger window is tried."""


class ContentFilteredError(ProviderError):
    """The upstream refused or cut the answer by its content filter. The policy decides:
    escalate (default) or return. ``status``: the HTTP status of a refused request (e.g.
    400), or None for a 200 whose answer was cut (``finish_reason: content_filter``)."""

    breaker_failure = False

    def __init__(self, deployment: str, message: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        self.status = status
        super().__init__(deployment, message, retry_after_s=retry_after_s)


class ProviderResponseError(ProviderError):
    """The provider answered with something we cannot read (bad JSON, missing fields, empty
    ``choices``, invalid token counts)."""

    retryable = True


class ReplayMissError(ProviderError):
    """The replay data has no recorded answer for this prompt and model."""

    breaker_failure = False


class BreakerOpenError(ProviderError):
    """The deployment's circuit breaker is open (or its half-open probes are taken): the call
    was not made."""

    breaker_failure = False


class BudgetDeniedError(ProviderError):
    """A spending budget cannot afford this call (its worst-case cost): the call was not made.
    The engine applies the policy's ``on_budget_exhausted``."""

    breaker_failure = False
    fallback = False

    def __init__(self, deployment: str, message: str, *, limit: str = "") -> None:
        self.limit = limit
        super().__init__(deployment, message)


class BulkheadFullError(ProviderError):
    """Load shed: the deployment's in-flight limit and wait queue are full; the call was not
    made and falls back like any provider error."""

    breaker_failure = False


# --- estimators and runs -------------------------------------------------------------------


class RunError(CascadeError):
    """A run ended without any answer. ``attempts`` says what was tried."""

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        self.attempts = tuple(attempts)
        super().__init__(message)


class NoAnswerError(RunError):
    """Every tier failed; no answer to return."""


class DeadlineExceededError(RunError):
    """The run's deadline expired before any tier produced an answer."""


class BudgetExceededError(RunError):
    """A spending budget cannot afford the next call and the policy says to fail
    (``on_exhausted: error``), or no answer was bought before it ran out. ``limit`` names the
    budget (scope, period, dollars or requests)."""

    def __init__(self, message: str, attempts: Sequence[Attempt] = (), *, limit: str = "") -> None:
        self.limit = limit
        super().__init__(message, attempts)


class StreamInterruptedError(ProviderConnectionError):
    """A streamed answer broke after its first bytes reached the caller: never retried and
    never failed over (the caller already has part of an answer)."""

    retryable = False
    fallback = False


class StreamStalledError(ProviderTimeoutError):
    """A streamed answer stalled (no chunk within the tier's timeout) after its first bytes
    reached the caller: never retried and never failed over."""

    retryable = False
    fallback = False


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BreakerOpenError",
    "BudgetDeniedError",
    "BudgetExceededError",
    "BulkheadFullError",
    "CascadeError",
    "ConfigError",
    "ContentFilteredError",
    "ContextLengthExceededError",
    "DeadlineExceededError",
    "EmptyPromptError",
    "InvalidFeatureError",
    "InvalidRequestError",
    "LogprobsUnavailableError",
    "MissingSecretError",
    "NoAnswerError",
    "OverloadedError",
    "PolicyError",
    "PolicyIssue",
    "PolicyNotFoundError",
    "PromptTooLongError",
    "ProviderConfigError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnreachableError",
    "QuotaExhaustedError",
    "RateLimitedError",
    "ReplayDataError",
    "ReplayMissError",
    "RequestError",
    "RouterArtifactError",
    "RoutingDataError",
    "RunError",
    "ServerError",
    "StreamInterruptedError",
    "StreamStalledError",
    "VerifierArtifactError",
]

