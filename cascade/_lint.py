"""``cascade validate``'s findings beyond schema errors: what would make a valid policy fail or
mislead at run time — an unset secret, a remote tier with no price, an estimator its upstream
may not serve. Pure but for reading the file and the price list."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from cascade._prices import PriceSource, tier_price
from cascade.errors import MissingSecretError
from cascade.policy import (
    LogprobSpec,
    OpenAIProvider,
    Policy,
    estimator_kinds,
    load_policy,
)
from cascade.policy._loader import KeyPath
from cascade.policy._loader import _index_lines as index_lines

__all__ = ["Finding", "Severity", "lint_policy"]

_PLACEHOLDER = "http://unset.invalid"  # stands in for an unset ${VAR}: valid as a URL or a key


class Severity(enum.Enum):
    WARNING = "warning"  # the policy loads but will fail or mislead: ``--strict`` makes it an error
    NOTE = "note"  # worth knowing; never an error


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    key_path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "line ?"
        return f"{where}, {self.key_path or '(top level)'}: {self.message}"


def _load_with_unset_secrets(path: Path, env: Mapping[str, str]) -> tuple[Policy, list[Finding]]:
    """Load the policy; every unset ``${VAR}`` becomes a warning (and a placeholder value)."""
    environ = dict(env)
    findings: list[Finding] = []
    while True:
        try:
            return load_policy(path, env=environ), findings
        except MissingSecretError as exc:
            issue = exc.issues[0]
            findings.append(Finding(Severity.WARNING, issue.key_path, issue.line,
                                    f"environment variable {exc.variable} is not set: runs "
                                    "fail until it is"))
            environ[exc.variable] = _PLACEHOLDER


def _lines(path: Path) -> dict[KeyPath, int]:
    """The line of every key path (the file loaded already, so it parses)."""
    lines: dict[KeyPath, int] = {}
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    if root is not None:
        index_lines(root, (), lines, [])
    return lines


def lint_policy(path: str | os.PathLike[str], *,
                env: Mapping[str, str] | None = None) -> tuple[Policy, list[Finding]]:
    """Load ``path`` (``PolicyError`` for schema problems, as ``load_policy``) and list the
    findings: unset secrets, remote tiers without a price, estimators that need token
    logprobs from an OpenAI-compatible upstream (not every server returns them)."""
    policy, findings = _load_with_unset_secrets(Path(path), os.environ if env is None else env)
    lines = _lines(Path(path))
    for i, tier in enumerate(policy.tiers):
        where, line = f"tiers[{i}]", lines.get(("tiers", i))
        priced = tier_price(tier, policy.defaults)
        if priced.source is PriceSource.MISSING:
            findings.append(Finding(Severity.WARNING, f"{where}.price", line,
                                    f"tier {tier.name!r} ({tier.display_model}) has no `price:` and "
                                    "the price list does not know it: its calls will cost $0"))
        elif priced.source is PriceSource.LIST:
            p = priced.price
            findings.append(Finding(Severity.NOTE, f"{where}.price", line,
                                    f"tier {tier.name!r}: ${p.input_per_1m:g} / ${p.output_per_1m:g} "
                                    f"per 1M input / output tokens from {priced.detail}"))
        needs = any(isinstance(k, LogprobSpec) for k in estimator_kinds(tier.estimator))
        if needs and isinstance(tier.provider, OpenAIProvider):
            fallback = ("its fallback_estimator serves answers without them"
                        if tier.fallback_estimator is not None else
                        "an answer without them raises LogprobsUnavailableError (set "
                        "`fallback_estimator:` to serve it with another estimator)")
            findings.append(Finding(Severity.NOTE, f"{where}.estimator",
                                    lines.get(("tiers", i, "estimator"), line),
                                    f"tier {tier.name!r}: the logprob estimator needs token logprobs "
                                    f"from {tier.provider.base_url}; not every OpenAI-compatible "
                                    f"server returns them: {fallback}"))
    return policy, findings
