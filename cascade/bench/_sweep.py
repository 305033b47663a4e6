"""Choosing cascade settings on the train split (pure numpy): which chain of tiers, and which
thresholds, from the confidences the real engine recorded there. Test never informs a choice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cascade.bench._metrics import aiq, hull
from cascade.tuning._calibrate import Recorded
from verifiers import simulate_cascade


@dataclass(frozen=True, slots=True)
class Setting:
    chain: tuple[str, ...]  # tier names, cheapest first
    thresholds: tuple[float, ...]  # one per tier but the last (which always accepts)
    train_cost: float
    train_accuracy: float


def simulate(chain: Sequence[Recorded], last_cost: np.ndarray,
             thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-query cost and correctness of a cascade over recorded confidences."""
    costs = [r.cost for r in chain[:-1]] + [last_cost]
    spent, right, _ = simulate_cascade(thresholds, [r.confidence for r in chain],
                                       [r.correct for r in chain], costs)
    return spent, right


def threshold_grid(confidence: np.ndarray, size: int) -> list[float]:
    """'Always accept' (0), the recorded confidences' quantiles above their minimum, and
    'never accept' (inf). The lowest setting is 0 rather than the train minimum: a test
    confidence below every train one must still be accepted there."""
    values = np.unique(np.quantile(confidence, np.linspace(0.0, 1.0, size)))
    return [0.0] + [float(v) for v in values[1:] if v > 0.0] + [math.inf]


def settings_for(names: Sequence[str], recorded: Mapping[str, Recorded],
                 single_cost: Mapping[str, np.ndarray], size: int) -> list[Setting]:
    chain = [recorded[n] for n in names]
    grids = [threshold_grid(r.confidence, size) for r in chain[:-1]]
    out = []
    for thresholds in itertools.product(*grids):
        cost, correct = simulate(chain, single_cost[names[-1]], thresholds)
        out.append(Setting(tuple(names), tuple(thresholds), float(cost.sum()), float(correct.mean())))
    return out


def pareto(settings: Sequence[Setting], keep: int) -> list[Setting]:
    """The settings on the train hull, at most ``keep`` of them spread along it (none for none)."""
    if not settings:
        return []
    vertices = {v for v in hull([(s.train_cost, s.train_accuracy) for s in settings])}
    front = sorted({(s.train_cost, s.train_accuracy): s for s in settings
                    if (s.train_cost, s.train_accuracy) in vertices}.values(),
                   key=lambda s: s.train_cost)
    if len(front) <= keep:
        return front
    index = np.unique(np.linspace(0, len(front) - 1, keep).round().astype(int))
    return [front[i] for i in index]


def best_chain(recorded: Mapping[str, Recorded], single_cost: Mapping[str, np.ndarray],
               order: Sequence[str], lengths: Sequence[int] = (2, 3), size: int = 11,
               keep: int = 24, judged: frozenset[str] | None = None
               ) -> tuple[tuple[str, ...], list[Setting], float]:
    """FrugalGPT-style: every cost-ordered chain of the given lengths, scored by its train
    AIQ (under the train c_max of the most expensive single model); returns the best chain,
    its train-hull settings and its train AIQ. Only ``judged`` tiers may come before the last."""
    c_max = max(float(c.sum()) for c in single_cost.values())
    best: tuple[tuple[str, ...], list[Setting], float] | None = None
    for length in lengths:
        for names in itertools.combinations(order, length):
            if judged is not None and not set(names[:-1]) <= judged:
                continue
            settings = settings_for(names, recorded, single_cost, size)
            score = aiq([(s.train_cost, s.train_accuracy) for s in settings], c_max)
            if best is None or score > best[2]:
                best = (tuple(names), settings, score)
    if best is None:
        raise ValueError("no chain: fewer tiers than the shortest chain length")
    return best[0], pareto(best[1], keep), best[2]
