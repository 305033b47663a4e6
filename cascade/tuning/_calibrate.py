"""``cascade calibrate``: choose per-tier thresholds from labelled recorded data.

Each tier of the policy answers the data's queries with the data's recorded answers for its
model (the tier's provider is swapped for a replay of ``--data``), and the real engine records
its estimator's confidence with a threshold no answer reaches. The threshold choice is pure
(``verifiers`` calibration math); the result can be written back into the policy YAML.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cascade._tier import Tier
from cascade.engine import Cascade
from cascade.errors import ConfigError, RunError
from cascade.policy import Policy, ReplayProvider, RoutingMode, TierSpec
from cascade.providers import ReplayProvider as ReplayLive
from cascade.types import ReplayFormat
from verifiers import (
    CalibrationError,
    accuracy_coverage,
    auroc,
    escalation_threshold,
    expected_calibration_error,
    RiskCalibration,
    quality_thresholds,
    risk_calibration,
    simulate_cascade,
)


class TargetKind(str, enum.Enum):
    QUALITY = "quality"  # share of the best tier's accuracy
    ESCALATION = "escalation"  # share of requests escalating from each tier
    RISK = "risk"  # false-accept rate <= alpha with probability >= 1 - delta
    COST = "cost"  # routing.mode unified only: mean cost <= share of the dearest tier's


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    value: float
    delta: float = 0.1

    @classmethod
    def parse(cls, text: str) -> Target:
        """``quality=0.99``, ``escalation=0.3``, ``cost=0.3`` (unified policies) or
        ``risk=0.05`` / ``risk=0.05,delta=0.1``."""
        head, _, rest = text.partition(",")
        name, _, value = head.partition("=")
        key, _, delta_text = rest.partition("=")
        try:
            kind = TargetKind(name.strip())
            number = float(value)
            delta = float(delta_text) if rest else 0.1
        except ValueError:
            raise ConfigError(f"target {text!r}: expected quality=Q, escalation=R, cost=C or risk=A[,delta=D]") from None
        if rest and (kind is not TargetKind.RISK or key.strip() != "delta"):
            raise ConfigError(f"target {text!r}: only a risk target takes a second setting, delta=D")
        if not 0 < number <= (1.5 if kind is TargetKind.QUALITY else 1) or not 0 < delta < 1:
            raise ConfigError(f"target {text!r}: value out of range")
        return cls(kind, number, delta)


@dataclass(frozen=True, slots=True)
class Recorded:
    """A tier's estimator on every query: confidence (failures count as 0), the recorded
    correctness of its answer, and what the tier cost (answer and estimator)."""

    confidence: np.ndarray
    correct: np.ndarray
    cost: np.ndarray


async def record_tier(tier: Tier, queries: Sequence[tuple[str, int]], feature: str = "calibrate",
                      progress: Callable[[int], None] | None = None) -> Recorded:
    """Run ``tier`` alone on each (prompt, data row) with an unreachable threshold;
    ``progress(k)`` is told of every k queries done."""
    engine = Cascade([replace(tier, threshold=math.inf)], feature=feature)
    n = len(queries)
    confidence, correct, cost = np.zeros(n), np.zeros(n), np.zeros(n)
    for i, (prompt, row) in enumerate(queries):
        try:
            result = await engine.run(prompt, metadata={"replay_row": str(row)})
        except RunError as exc:
            cost[i] = math.fsum(a.cost for a in exc.attempts)
            continue
        attempt = result.attempts[0]
        confidence[i] = attempt.confidence or 0.0
        correct[i] = attempt.label or 0.0  # quality: 0/1 or graded
        cost[i] = attempt.cost
        if progress is not None and (i % 50 == 49 or i == n - 1):
            progress(50 if i % 50 == 49 else (i % 50) + 1)
    return Recorded(confidence, correct, cost)


async def record_chain(tiers: Sequence[Tier], queries: Sequence[tuple[str, int]],
                       feature: str = "calibrate") -> list[Recorded]:
    """Every tier on every query, in one run per query with thresholds no answer reaches, so
    that each tier's estimator sees what it would in production: the answers of the cheaper
    tiers before it (agreement evidence)."""
    engine = Cascade([replace(t, threshold=math.inf) for t in tiers], feature=feature)
    n, t = len(queries), len(tiers)
    confidence, correct, cost = np.zeros((t, n)), np.zeros((t, n)), np.zeros((t, n))
    for i, (prompt, row) in enumerate(queries):
        try:
            attempts = (await engine.run(prompt, metadata={"replay_row": str(row)})).attempts
        except RunError as exc:
            attempts = exc.attempts
        for attempt in attempts:
            confidence[attempt.tier, i] = attempt.confidence or 0.0
            correct[attempt.tier, i] = attempt.label or 0.0
            cost[attempt.tier, i] = attempt.cost
    return [Recorded(confidence[j], correct[j], cost[j]) for j in range(t)]


def replayed_policy(policy: Policy, data: Path, fmt: ReplayFormat | None = None) -> Policy:
    """The policy with every tier answering from ``data`` (same models, estimators, prices)."""
    spec = ReplayProvider(kind="replay", data=str(data.resolve()), format=fmt)
    tiers = tuple(t.model_copy(update={"provider": spec, "models": tuple(
        m.model_copy(update={"provider": None}) if not isinstance(m, str) else m for m in t.models)})
        for t in policy.tiers)
    return policy.model_copy(update={"tiers": tiers})


@dataclass(frozen=True, slots=True)
class TierReport:
    name: str
    estimator: str | None
    auroc: float | None
    ece: float | None
    coverage: tuple[tuple[float, float, float], ...]  # (coverage, accuracy, threshold), sampled
    accuracy: float
    cost: float


@dataclass(frozen=True, slots=True)
class Calibration:
    target: Target
    thresholds: dict[str, float]
    tiers: tuple[TierReport, ...]
    accuracy: float  # of the cascade with the chosen thresholds, on the data
    cost: float  # mean per query
    escalation: tuple[float, ...]
    best_accuracy: float
    notes: tuple[str, ...] = ()
    risk: tuple[RiskCalibration, ...] = ()  # risk target: one per tier that can accept early

    @property
    def feasible(self) -> bool:
        """False when a risk target is met only by some tier accepting (almost) nothing."""
        return all(r.feasible for r in self.risk)

    def comments(self) -> dict[str, str]:
        """Per tier name, the YAML comment written next to its threshold: the guarantee and
        the accept rate it costs (risk targets only)."""
        return {name: risk_comment(r) for name, r in zip(self.thresholds, self.risk)}

    def to_dict(self) -> dict[str, object]:
        return {
            "target": {"kind": self.target.kind.value, "value": self.target.value,
                       "delta": self.target.delta},
            "thresholds": {k: _number(v) for k, v in self.thresholds.items()},
            "accuracy": self.accuracy, "best_accuracy": self.best_accuracy, "cost": self.cost,
            "escalation": list(self.escalation), "notes": list(self.notes),
            "feasible": self.feasible,
            "risk": [dict(tier=name, **risk_dict(r)) for name, r in zip(self.thresholds, self.risk)],
            "tiers": [{"name": t.name, "estimator": t.estimator, "auroc": t.auroc, "ece": t.ece,
                       "accuracy": t.accuracy, "cost": t.cost} for t in self.tiers],
        }


def _number(value: float) -> float | str:
    return "never" if math.isinf(value) else value


def risk_comment(r: RiskCalibration) -> str:
    low, high = r.accept_interval
    text = (f"false accepts <= {r.alpha:g} w.p. >= {1 - r.delta:g}; accepts {r.accept_rate:.1%} "
            f"[{low:.1%}, {high:.1%}] of {r.n} calibration queries (a perfect estimator: "
            f"{r.best_accept_rate:.1%})")
    return text if r.feasible else text + "; WARNING: accepts (almost) nothing"


def risk_dict(r: RiskCalibration) -> dict[str, object]:
    return {"threshold": _number(r.threshold), "alpha": r.alpha, "delta": r.delta,
            "tested_at": r.level, "n": r.n, "accepted": r.accepted, "accept_rate": r.accept_rate,
            "accept_interval": list(r.accept_interval), "false_accepts": r.false_accepts,
            "risk_bound": r.risk_bound, "best_accept_rate": r.best_accept_rate,
            "max_false_accepts": r.max_false_accepts, "min_examples": r.min_examples,
            "needed_examples": r.needed_examples, "floor": r.floor, "feasible": r.feasible,
            "warning": r.warning()}


def _tier_report(spec: TierSpec, tier: Tier, rec: Recorded) -> TierReport:
    score, ece = None, None
    if tier.estimator is not None:
        try:
            score = auroc(rec.confidence, rec.correct)
            ece = expected_calibration_error(rec.confidence, rec.correct)
        except CalibrationError:
            pass  # one class only: no ranking to judge
    curve = accuracy_coverage(rec.confidence, rec.correct) if tier.estimator is not None else []
    step = max(1, len(curve) // 8)
    return TierReport(spec.name, tier.estimator.name if tier.estimator else None, score, ece,
                      tuple(curve[::step]), float(rec.correct.mean()), float(rec.cost.mean()))


@dataclass(frozen=True, slots=True)
class Choice:
    thresholds: list[float]  # one per tier but the last; math.inf: never accepts
    notes: list[str]
    risk: tuple[RiskCalibration, ...] = ()  # risk target only, one per threshold


def choose(target: Target, recorded: Sequence[Recorded], floor: float = 0.05) -> Choice:
    """Thresholds for every tier but the last (pure). A risk target splits α and δ evenly
    over the tiers that can accept early (a union bound) and reports, per tier, what its
    threshold accepts and whether that is (almost) nothing (< ``floor`` of all queries)."""
    conf = [r.confidence for r in recorded]
    correct = [r.correct for r in recorded]
    cost = [r.cost for r in recorded]
    if target.kind is TargetKind.QUALITY:
        return Choice(list(quality_thresholds(conf, correct, cost, target.value).thresholds), [])
    if target.kind is TargetKind.COST:
        raise ConfigError(_COST_TARGET)
    chosen: list[float] = []
    notes: list[str] = []
    risks: list[RiskCalibration] = []
    reach = np.ones(len(correct[0]), dtype=bool)
    steps = len(recorded) - 1
    for t in range(steps):
        match target.kind:
            case TargetKind.ESCALATION:
                threshold = escalation_threshold(conf[t][reach], target.value)
            case _:  # RISK (QUALITY and COST returned above)
                masked = np.where(reach, conf[t], -np.inf)
                risk = risk_calibration(masked, correct[t], target.value / steps,
                                        target.delta / steps, floor=floor)
                threshold = risk.threshold
                risks.append(risk)
                warning = risk.warning()
                if warning is not None:
                    notes.append(f"tier {t}: {warning}")
        chosen.append(threshold)
        reach &= conf[t] < threshold
    return Choice(chosen, notes, tuple(risks))


_COST_TARGET = ("a cost target calibrates λ of a `routing.mode: unified` policy; per-tier "
                "thresholds take quality, escalation or risk (a router's: cascade calibrate-router "
                "--target cost=C)")


async def calibrate(policy: Policy, data: Path, target: Target, base_dir: Path,
                    floor: float = 0.05) -> Calibration:
    """Per-tier thresholds (a unified-mode policy has none: ``calibrate_unified`` chooses
    its λ)."""
    if policy.routing is not None and policy.routing.mode is RoutingMode.UNIFIED:
        raise ConfigError("the policy is in routing.mode unified: its tiers have no thresholds; "
                          "calibrate its λ with cascade.tuning.calibrate_unified")
    if target.kind is TargetKind.COST:
        raise ConfigError(_COST_TARGET)
    replay = replayed_policy(policy, data)
    missing = [t.name for t in policy.tiers[:-1] if t.estimator is None]
    if missing:
        raise ConfigError(f"tier(s) {', '.join(missing)} have no estimator: nothing to calibrate")
    async with Cascade.from_policy(replay, base_dir=base_dir) as engine:
        provider = engine.tiers[0].provider
        assert isinstance(provider, ReplayLive)
        rows = provider.table.rows
        queries = [(row.prompt, i) for i, row in enumerate(rows, 1)
                   if all(provider.table.record(row, m).correct is not None
                          for t in engine.tiers for m in t.models)]
        recorded = await record_chain(engine.tiers, queries)
        reports = tuple(_tier_report(s, t, r) for s, t, r in zip(policy.tiers, engine.tiers, recorded))
    choice = choose(target, recorded, floor)
    spent, right, escalation = simulate_cascade(
        choice.thresholds, [r.confidence for r in recorded], [r.correct for r in recorded],
        [r.cost for r in recorded])
    # infinity (never accept) stays infinity: written as `never`, not clamped to 1.0, which
    # would accept every confidence of exactly 1 (e.g. unanimous votes)
    written = {t.name: th for t, th in zip(policy.tiers, choice.thresholds)}
    return Calibration(target, written, reports, float(right.mean()), float(spent.mean()),
                       tuple(escalation), max(r.accuracy for r in reports), tuple(choice.notes),
                       choice.risk)
