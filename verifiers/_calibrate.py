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

A guarantee can be met by accepting nothing, so ``risk_calibration`` reports what the chosen
threshold accepts (with an interval), the most any estimator could accept at this α, δ and n,
and how many labelled examples this estimator would need to accept a useful share.
"""

from __future__ import annotations

# Graded quality (scores in [0, 1], e.g. an LLM judge's grade): accuracies, coverage curves,
# ECE and cascade simulations use the mean quality; what needs a yes/no label (AUROC, the
# risk bound's false accepts, a classifier's target) calls an answer good at quality >= GOOD.
# On 0/1 correctness both readings are the same.

import functools
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


def _levels(alpha: float, delta: float, batch: int | None) -> tuple[float, float]:
    """The (rate, δ) every threshold is tested at: (α, δ), or with ``batch`` (α', δ/2)."""
    if not 0 < alpha < 1 or not 0 < delta < 1:
        raise CalibrationError("alpha and delta must be in (0, 1)")
    if batch is None:
        return alpha, delta
    if batch < 1:
        raise CalibrationError(f"batch must be a positive number of requests, not {batch}")
    return batch_level(alpha, delta / 2, batch), delta / 2


def _scan(c: np.ndarray, y: np.ndarray, level: float, budget: float) -> float:
    """Fixed-sequence scan over the distinct finite confidences, strictest first; stops at
    the first threshold whose Clopper–Pearson bound exceeds ``level``. Items at −∞ (never
    reaching this tier) are never accepted and so never candidates. (Vectorised: every
    threshold's false accepts — wrong items with confidence ≥ it — and bound at once.)"""
    from scipy.stats import beta

    finite = np.isfinite(c)
    values = np.unique(c[finite])[::-1]
    wrong = np.sort(c[finite & ~y])
    false_accepts = wrong.size - np.searchsorted(wrong, values, side="left")
    n = c.size
    bounds = np.where(false_accepts >= n, 1.0,
                      beta.ppf(1 - budget, false_accepts + 1, np.maximum(n - false_accepts, 1)))
    failed = np.flatnonzero(bounds > level)
    stop = int(failed[0]) if failed.size else values.size
    return float(values[stop - 1]) if stop > 0 else math.inf


def risk_threshold(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                   alpha: float, delta: float, *, batch: int | None = None) -> float:
    """The loosest threshold whose false-accept rate is certified ≤ α at confidence 1 − δ
    (fixed-sequence Learn-then-Test with Clopper–Pearson bounds; module docstring). Returns
    ``math.inf`` (accept nothing) when not even the strictest threshold is certified.

    Without ``batch`` the guarantee is on the rate over all future traffic. With ``batch = m``
    it is on the rate *realised* over the next m requests: δ is split in two halves, one for the
    population bound at a stricter α' and one for a Binomial(m, α') batch exceeding α m.
    ``risk_calibration`` gives the same threshold with what it accepts and whether more can be."""
    c, y = _arrays(confidence, correct)
    level, budget = _levels(alpha, delta, batch)
    return _scan(c, y, level, budget)


def max_false_accepts(n: int, level: float, budget: float) -> int:
    """The most false accepts k among n items with Clopper–Pearson bound U(k, n, budget) ≤
    ``level`` (U grows with k), or −1 when not even k = 0 passes: then nothing can be
    certified. U(0, n) = 1 − budget^(1/n), so k = 0 passes iff n ≥ ln budget / ln(1 − level)."""
    low, high = -1, n  # invariant: low = -1 or U(low) <= level; U(high) > level (U(n) = 1)
    while high - low > 1:
        mid = (low + high) // 2
        if clopper_pearson_upper(mid, n, budget) <= level:
            low = mid
        else:
            high = mid
    return low


def min_examples(level: float, budget: float) -> int:
    """The fewest calibration items at which any threshold can be certified at all (zero
    false accepts, bound 1 − budget^(1/n) ≤ level)."""
    return math.ceil(math.log(budget) / math.log1p(-level) - 1e-9)


def examples_needed(false_accept_rate: float, level: float, budget: float,
                    limit: int = 10**7) -> int | None:
    """The fewest items n at which a threshold whose false-accept rate is ``false_accept_rate``
    would be certified (k = ⌈rate · n⌉ false accepts, bound ≤ ``level``); None when the rate
    is not below ``level`` (no amount of data helps) or more than ``limit`` would be needed.
    Uses U(k, n) ≤ level ⇔ P(Binomial(n, level) ≤ k) ≤ budget, scanning n in growing blocks."""
    from scipy.stats import binom

    if false_accept_rate >= level:
        return None
    low = min_examples(level, budget)
    while low <= limit:
        ns = np.arange(low, min(limit, 2 * low + 1000) + 1)
        ks = np.ceil(false_accept_rate * ns - 1e-12)
        passing = np.flatnonzero(binom.cdf(ks, ns, level) <= budget)
        if passing.size:
            return int(ns[passing[0]])
        low = int(ns[-1]) + 1
    return None


def _clopper_pearson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    tail = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    return low, high


@dataclass(frozen=True, slots=True)
class RiskCalibration:
    """A risk calibration with what it accepts and whether more could be (``risk_calibration``).

    Rates are over all ``n`` calibration items. ``accept_interval`` is the two-sided 95 %
    Clopper–Pearson interval of the accept rate; it is measured on the data that chose the
    threshold, so it leans optimistic. ``best_accept_rate`` is what a perfect ranking
    (every correct answer above every wrong one) would accept under the same procedure:
    all correct items plus the most false accepts any certified threshold may hold,
    (correct + k*) / n — the finite-sample form of μ + α for this risk, P(accepted and wrong)."""

    threshold: float  # math.inf: accept nothing
    alpha: float
    delta: float
    level: float  # the rate each threshold was tested at: α, or α' with a batch guarantee
    budget: float  # the δ each threshold was tested at
    n: int
    correct: int  # labelled-correct items that can be accepted (confidence finite)
    accepted: int
    false_accepts: int
    accept_interval: tuple[float, float]
    risk_bound: float  # certified upper bound of the false-accept rate at the threshold
    max_false_accepts: int  # k*: −1 when n < min_examples
    best_accept_rate: float
    min_examples: int
    needed_examples: int | None  # items for this estimator to certify accepting ≥ floor
    floor: float
    # the strictest threshold accepting ≥ floor: (threshold, accept rate, false-accept rate)
    widening: tuple[float, float, float] | None = None

    @property
    def accept_rate(self) -> float:
        return self.accepted / self.n

    @property
    def feasible(self) -> bool:
        """False when the guarantee is met only by accepting (almost) nothing (< floor)."""
        return self.accept_rate >= self.floor

    def warning(self) -> str | None:
        """Why the calibration accepts (almost) nothing and what would change that; None
        when it accepts at least ``floor``."""
        if self.feasible:
            return None
        head = (f"the risk target (false accepts <= {self.alpha:g} with probability >= "
                f"{1 - self.delta:g}) is met only by accepting {self.accept_rate:.1%} of "
                f"{self.n} calibration queries (floor {self.floor:.0%})")
        if self.max_false_accepts < 0:
            return (f"{head}: {self.n} labelled examples cannot certify any acceptance at this "
                    f"alpha and delta; at least {self.min_examples} are needed")
        if self.best_accept_rate < self.floor:
            return f"{head}: even a perfect estimator would accept at most {self.best_accept_rate:.1%}"
        if self.widening is None:  # only when floor > every accept rate: best_accept_rate < floor
            return f"{head}: no threshold accepts {self.floor:.0%}"
        t, rate, wrong = self.widening
        where = (f"the strictest threshold accepting at least {self.floor:.0%} ({t:.4g}, accepts "
                 f"{rate:.1%}) has a false-accept rate of {wrong:.3g}")
        if self.needed_examples is None:
            return (f"{head}: {where}, not below the {self.level:.3g} tested; more data will not "
                    f"help, a sharper estimator (or a looser target) is needed")
        return (f"{head}: {where}; about {self.needed_examples} labelled examples would be needed "
                f"to accept {self.floor:.0%} with this estimator (a perfect one would accept "
                f"{self.best_accept_rate:.1%} now)")


def risk_calibration(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                     alpha: float, delta: float, *, batch: int | None = None,
                     floor: float = 0.05) -> RiskCalibration:
    """``risk_threshold`` with its coverage and a feasibility check: how much the threshold
    accepts (with an interval), the most a perfect estimator could accept at this n, and —
    when less than ``floor`` is accepted — how many labelled examples this estimator would
    need. Items at −∞ confidence (not reaching the tier) count in n but are never accepted."""
    c, y = _arrays(confidence, correct)
    if not 0 <= floor <= 1:
        raise CalibrationError(f"floor must be in [0, 1], not {floor}")
    level, budget = _levels(alpha, delta, batch)
    n, eligible = c.size, np.isfinite(c)
    k_star = max_false_accepts(n, level, budget)
    right = int((y & eligible).sum())
    best = min(int(eligible.sum()), right + k_star) / n if k_star >= 0 else 0.0
    threshold = _scan(c, y, level, budget) if k_star >= 0 else math.inf
    accepted_mask = c >= threshold
    accepted, false_accepts = int(accepted_mask.sum()), int((accepted_mask & ~y).sum())
    bound = clopper_pearson_upper(false_accepts, n, budget) if accepted else 0.0
    needed, widening = None, None
    if accepted / n < floor:
        wide = [t for t in np.unique(c[eligible])[::-1] if (c >= t).mean() >= floor]
        if wide:  # the strictest such threshold has the fewest false accepts
            rate = float((~y & (c >= wide[0])).mean())
            widening = (float(wide[0]), float((c >= wide[0]).mean()), rate)
            needed = examples_needed(rate, level, budget)
    return RiskCalibration(threshold, alpha, delta, level, budget, n, right, accepted, false_accepts,
                           _clopper_pearson_interval(accepted, n), bound, k_star, best,
                           min_examples(level, budget), needed, floor, widening)


@functools.lru_cache(maxsize=256)
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
    if ordered[k] > ordered[k - 1]:
        return float((ordered[k - 1] + ordered[k]) / 2)
    # k falls inside a block of tied confidences: all of it escalates or none of it does,
    # whichever count is nearer k (ties: fewer escalations)
    low = int(np.searchsorted(ordered, ordered[k], side="left"))
    high = int(np.searchsorted(ordered, ordered[k], side="right"))
    if k - low <= high - k:
        return float(ordered[k])
    return math.inf if high >= c.size else float((ordered[high - 1] + ordered[high]) / 2)


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
