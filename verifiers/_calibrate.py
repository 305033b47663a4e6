"""Calibration math (pure, numpy): how good a confidence is, and which thresholds to use.

Three targets for choosing thresholds from labelled held-out data:
- **quality**: reach ``q`` × the best tier's accuracy at the least mean cost (``quality_thresholds``);
- **escalation rate**: a given share of requests escalates from a tier (``escalation_threshold``);
- **risk**: the false-accept rate — P(accepted and wrong) over all requests — stays ≤ α with
  probability ≥ 1 − δ over the draw of the calibration data (``risk_threshold``).

The risk guarantee: for each candidate threshold t the number of false accepts on n i.i.d.
calibration items is Binomial(n, R(t)); the one-sided Clopper–Pearson bound (Clopper & Pearson
1934) gives U(t) with P(R(t) ≤ U(t)) ≥ 1 − δ. Thresholds are tested in a fixed sequence from
the strictest (R smallest) to the loosest and the scan stops at the first failure — the
fixed-sequence procedure of Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei 2021,
arXiv 2110.01052), which needs no multiple-testing correction. The chosen threshold therefore
has test false-accept rate ≤ α with probability ≥ 1 − δ (tested on real data in
``tests/test_calibrate.py`` over 200 random splits).
"""

from __future__ import annotations

# Graded quality (scores in [0, 1], e.g. an LLM judge's grade): accuracies, coverage curves,
# ECE and cascade simulations use the mean quality; what needs a yes/no label (AUROC, the
# risk bound's false accepts, a classifier's target) calls an answer good at quality >= GOOD.
# On 0/1 correctness both readings are the same.

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class CalibrationError(ValueError):
    """The data cannot support the requested calibration (e.g. one class only, or a target
    no setting reaches)."""


GOOD = 0.5


def good(quality: Sequence[float] | np.ndarray) -> np.ndarray:
    """Which answers count as good: quality >= ``GOOD`` (0/1 correctness: the correct ones)."""
    return np.asarray(quality, dtype=float) >= GOOD


def _arrays(confidence: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray,
            graded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, good) — or (confidence, quality) with ``graded``."""
    c = np.asarray(confidence, dtype=float)
    y = np.asarray(correct, dtype=float) if graded else good(correct)
    if c.shape != y.shape or c.ndim != 1 or c.size == 0:
        raise CalibrationError(f"need two equal-length, non-empty 1-d arrays (got {c.shape} and {y.shape})")
    return c, y


def auroc(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of confidence for "the answer is correct" (ties count half)."""
    c, y = _arrays(confidence, correct)
    positives, negatives = c[y], c[~y]
    if positives.size == 0 or negatives.size == 0:
        raise CalibrationError("AUROC needs both correct and wrong answers")
    order = np.argsort(c, kind="mergesort")
    ranks = np.empty(c.size)
    sorted_c = c[order]
    i = 0
    while i < c.size:  # average ranks over ties
        j = i
        while j + 1 < c.size and sorted_c[j + 1] == sorted_c[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - positives.size * (positives.size + 1) / 2
    return float(u / (positives.size * negatives.size))


def expected_calibration_error(confidence: Sequence[float] | np.ndarray,
                               correct: Sequence[bool] | np.ndarray, bins: int = 10) -> float:
    """Σ over equal-width bins of |mean quality − mean confidence| × share of items in the bin."""
    c, y = _arrays(confidence, correct, graded=True)
    index = np.minimum((c * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += abs(float(y[mask].mean()) - float(c[mask].mean())) * mask.mean()
    return float(total)


def accuracy_coverage(confidence: Sequence[float] | np.ndarray,
                      correct: Sequence[bool] | np.ndarray) -> list[tuple[float, float, float]]:
    """(coverage, mean quality of the accepted, threshold) for every distinct threshold, strictest first."""
    c, y = _arrays(confidence, correct, graded=True)
    out = []
    for t in np.unique(c)[::-1]:
        accepted = c >= t
        out.append((float(accepted.mean()), float(y[accepted].mean()), float(t)))
    return out


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided (1 − δ) upper confidence bound on a binomial rate with k events in n trials."""
    from scipy.stats import beta

    if not 0 <= k <= n or n <= 0 or not 0 < delta < 1:
        raise CalibrationError(f"bad arguments k={k}, n={n}, delta={delta}")
    return 1.0 if k == n else float(beta.ppf(1 - delta, k + 1, n - k))


def risk_threshold(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                   alpha: float, delta: float, *, batch: int | None = None) -> float:
    """The loosest threshold whose false-accept rate is certified ≤ α at confidence 1 − δ
    (fixed-sequence Learn-then-Test with Clopper–Pearson bounds; module docstring). Returns
    ``math.inf`` (accept nothing) when not even the strictest threshold is certified.

    Without ``batch`` the guarantee is on the rate over all future traffic. With ``batch = m``
    it is on the rate *realised* over the next m requests: δ is split in two halves, one for the
    population bound at a stricter α' and one for a Binomial(m, α') batch exceeding α m."""
    c, y = _arrays(confidence, correct)
    if not 0 < alpha < 1 or not 0 < delta < 1:
        raise CalibrationError("alpha and delta must be in (0, 1)")
    level, budget = alpha, delta
    if batch is not None:
        level, budget = batch_level(alpha, delta / 2, batch), delta / 2
    chosen = math.inf
    for t in np.unique(c)[::-1]:
        false_accepts = int((~y & (c >= t)).sum())
        if clopper_pearson_upper(false_accepts, c.size, budget) > level:
            break
        chosen = float(t)
    return chosen


def batch_level(alpha: float, delta: float, batch: int) -> float:
    """The largest rate α' for which a Binomial(batch, α') count exceeds α · batch with
    probability ≤ δ (bisection on the Binomial tail)."""
    from scipy.stats import binom

    limit = math.floor(alpha * batch)
    low, high = 0.0, alpha
    for _ in range(60):
        mid = (low + high) / 2
        if binom.sf(limit, batch, mid) <= delta:
            low = mid
        else:
            high = mid
    return low


def escalation_threshold(confidence: Sequence[float] | np.ndarray, rate: float) -> float:
    """The threshold under which (as close as the data allows to) ``rate`` of items fall."""
    c = np.asarray(confidence, dtype=float)
    if not 0 <= rate <= 1 or c.size == 0:
        raise CalibrationError("rate must be in [0, 1] and the data non-empty")
    k = int(round(rate * c.size))
    ordered = np.sort(c)
    if k >= c.size:
        return math.inf
    if k == 0:
        return float(ordered[0])
    return float((ordered[k - 1] + ordered[k]) / 2) if ordered[k] > ordered[k - 1] else float(ordered[k])


def simulate_cascade(thresholds: Sequence[float], confidence: Sequence[np.ndarray],
                     correct: Sequence[np.ndarray], cost: Sequence[np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Per-item cost and correctness of a cascade (tier t accepts when its confidence ≥
    thresholds[t]; the last tier always answers), and each tier's escalation rate."""
    n = len(correct[-1])
    open_ = np.ones(n, dtype=bool)
    spent, right, escalation = np.zeros(n), np.zeros(n), []  # right: quality (graded or 0/1)
    for t, threshold in enumerate(thresholds):
        spent[open_] += cost[t][open_]
        accept = open_ & (confidence[t] >= threshold)
        right[accept] = correct[t][accept]
        reached = int(open_.sum())
        open_ &= ~accept
        escalation.append(float(open_.sum() / reached) if reached else 0.0)
    spent[open_] += cost[-1][open_]
    right[open_] = correct[-1][open_]
    return spent, right, escalation


@dataclass(frozen=True, slots=True)
class CascadeChoice:
    thresholds: tuple[float, ...]  # one per tier but the last
    accuracy: float
    cost: float  # mean per item
    escalation: tuple[float, ...]


def _grid(confidence: np.ndarray, size: int) -> list[float]:
    return sorted({float(v) for v in np.quantile(confidence, np.linspace(0, 1, size))} | {math.inf})


def quality_thresholds(confidence: Sequence[np.ndarray], correct: Sequence[np.ndarray],
                       cost: Sequence[np.ndarray], share: float, grid: int = 21) -> CascadeChoice:
    """The cheapest thresholds (mean cost) whose accuracy is ≥ ``share`` × the best single
    tier's accuracy. Full grid search over quantiles of each tier's confidences for up to
    three tiers; coordinate descent beyond."""
    tiers = len(correct)
    target = share * max(float(np.mean(c)) for c in correct)
    grids = [_grid(np.asarray(c, dtype=float), grid) for c in confidence[:-1]]
    best: CascadeChoice | None = None

    def consider(thresholds: Sequence[float]) -> CascadeChoice:
        nonlocal best
        spent, right, esc = simulate_cascade(thresholds, confidence, correct, cost)
        choice = CascadeChoice(tuple(thresholds), float(right.mean()), float(spent.mean()), tuple(esc))
        if choice.accuracy >= target - 1e-12 and (best is None or choice.cost < best.cost):
            best = choice
        return choice

    if tiers <= 3:
        for thresholds in itertools.product(*grids):
            consider(thresholds)
    else:
        current = [math.inf] * (tiers - 1)
        for _ in range(4):
            for t in range(tiers - 1):
                for value in grids[t]:
                    consider([*current[:t], value, *current[t + 1:]])
                if best is not None:
                    current = list(best.thresholds)
    if best is None:
        raise CalibrationError(f"no thresholds reach {share:.1%} of the best tier's accuracy")
    return best
