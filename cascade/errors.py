"""One exception tree. Every error the library raises on purpose is a ``CascadeError``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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


# --- providers ---------------------------------------------------------------------------


class ProviderError(CascadeError):
    """A model call failed. ``deployment`` names the endpoint, never a secret."""

    def __init__(self, deployment: str, message: str) -> None:
        self.deployment = deployment
        super().__init__(f"{deployment}: {message}")


class ProviderUnreachableError(ProviderError):
    """Could not connect (refused, DNS, TLS)."""


class ProviderTimeoutError(ProviderError):
    """The call took longer than the tier's timeout."""


class ProviderHTTPError(ProviderError):
    def __init__(self, deployment: str, status: int, detail: str) -> None:
        self.status = status
        super().__init__(deployment, f"HTTP {status}: {detail}")


class ProviderResponseError(ProviderError):
    """The provider answered with something we cannot read."""


class ReplayMissError(ProviderError):
    """The replay data has no recorded answer for this prompt and model."""


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


__all__ = [
    "CascadeError",
    "ConfigError",
    "DeadlineExceededError",
    "EmptyPromptError",
    "InvalidFeatureError",
    "InvalidRequestError",
    "MissingSecretError",
    "NoAnswerError",
    "PolicyError",
    "PolicyIssue",
    "PolicyNotFoundError",
    "PromptTooLongError",
    "ProviderConfigError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnreachableError",
    "ReplayDataError",
    "ReplayMissError",
    "RequestError",
    "RouterArtifactError",
    "RoutingDataError",
    "RunError",
]
