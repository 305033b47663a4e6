"""``cascade calibrate-router``: choose a learned router's thresholds on recorded data.

Predictions come from the policy's own router (the artifact it names), on the prompts of the
data as the engine would see them; the per-tier cost and correctness for the quality and cost
targets come from running each tier alone through the engine on the replayed data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np

from cascade.tuning._calibrate import record_tier, replayed_policy
from cascade.engine import Cascade
from cascade.errors import ConfigError
from cascade.policy import Policy
from cascade.providers import ReplayProvider
from cascade.routing import (
    LearnedRouter,
    RouteTargetKind,
    router_text,
    share_thresholds,
    starts,
    target_threshold,
)
from verifiers import auroc
from verifiers._calibrate import good


@dataclass(frozen=True, slots=True)
class RouteTarget:
    kind: RouteTargetKind
    values: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> RouteTarget:
        """``shares=0.5,0.3,0.2`` (one per tier), ``quality=0.95`` or ``cost=0.3``."""
        name, _, value = text.partition("=")
        try:
            kind = RouteTargetKind(name.strip())
            values = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise ConfigError(f"target {text!r}: expected shares=S1,S2,..., quality=Q or cost=C") from None
        if kind is not RouteTargetKind.SHARES and (len(values) != 1 or not 0 < values[0] <= 1):
            raise ConfigError(f"target {text!r}: one value in (0, 1]")
        return cls(kind, values)


@dataclass(frozen=True, slots=True)
class RouteCalibration:
    target: RouteTarget
    thresholds: tuple[float, ...]
    shares: tuple[float, ...]  # share of the data starting at each tier, as calibrated
    queries: int
    accuracy: float | None = None  # routing only, on the data (labelled targets)
    cost: float | None = None  # mean per query
    auroc: tuple[float | None, ...] = ()  # of each tier's P(acceptable) for its correctness


async def calibrate_router(policy: Policy, data: Path, target: RouteTarget,
                           base_dir: Path) -> RouteCalibration:
    if policy.routing is None:
        raise ConfigError("the policy has no routing section")
    replay = replayed_policy(policy, data)
    async with Cascade.from_policy(replay, base_dir=base_dir) as engine:
        routing = engine.routing
        if routing is None or not isinstance(routing.router, LearnedRouter):
            raise ConfigError("calibrate-router needs a trained router (kind knn, mf or bert)")
        router = routing.router
        provider = engine.tiers[0].provider
        assert isinstance(provider, ReplayProvider)
        table = provider.table
        labelled = target.kind is not RouteTargetKind.SHARES  # shares need prompts only
        numbers = [i for i, row in enumerate(table.rows, 1) if not labelled or all(
            table.record(row, t.model).correct is not None for t in engine.tiers)]
        if not numbers:
            raise ConfigError(f"{data}: no row has a label for every tier")
        texts = [router_text(table.rows[i - 1].prompt, routing.max_chars) for i in numbers]
        p, _ = await anyio.to_thread.run_sync(router.predict, texts)
        if not labelled:
            thresholds = share_thresholds(p, target.values)
            return _result(target, thresholds, p, router.default)
        queries = [(table.rows[i - 1].prompt, i) for i in numbers]
        alone = [dataclasses.replace(t, estimator=None, threshold=None) for t in engine.tiers]
        recorded = [await record_tier(t, queries) for t in alone]
    correct = np.stack([r.correct for r in recorded], axis=1).astype(float)
    cost = np.stack([r.cost for r in recorded], axis=1)
    chosen = target_threshold(p, correct, cost, target.kind, target.values[0], router.default)
    thresholds = (chosen.threshold,) * p.shape[1]
    aurocs = tuple(auroc(p[:, j], correct[:, j]) if 0 < good(correct[:, j]).mean() < 1 else None
                   for j in range(p.shape[1]))
    return dataclasses.replace(_result(target, thresholds, p, router.default),
                               accuracy=chosen.accuracy, cost=chosen.cost, auroc=aurocs)


def _result(target: RouteTarget, thresholds: tuple[float, ...], p: np.ndarray,
            default: int) -> RouteCalibration:
    begin = starts(p, thresholds, default)
    shares = np.bincount(begin, minlength=p.shape[1]) / p.shape[0]
    return RouteCalibration(target, tuple(float(t) for t in thresholds),
                            tuple(float(s) for s in shares), int(p.shape[0]))
