"""Calibration math on hand data, synthetic data with a known answer, and the risk guarantee
on real recorded data (skipped without ../shared/data)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cascade.providers import load_table
from verifiers import (
    AnswerKind,
    CalibrationError,
    accuracy_coverage,
    auroc,
    clopper_pearson_upper,
    escalation_threshold,
    examples_needed,
    expected_calibration_error,
    max_false_accepts,
    min_examples,
    quality_thresholds,
    risk_calibration,
    risk_threshold,
    simulate_cascade,
    vote_confidence,
)


def test_auroc_by_hand() -> None:
    # positives 0.9, 0.6; negatives 0.7, 0.2: pairs won 1 + 1 + 0 + 1 = 3 of 4
    assert auroc([0.9, 0.6, 0.7, 0.2], [1, 1, 0, 0]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie counts half
    with pytest.raises(CalibrationError, match="both"):
        auroc([0.1, 0.2], [1, 1])


def test_ece_and_accuracy_coverage_by_hand() -> None:
    # bin [0.9, 1): conf 0.95 x2, one right -> |0.5 - 0.95| x 0.5; bin [0.1, 0.2): 0.15 x2, none right
    ece = expected_calibration_error([0.95, 0.95, 0.15, 0.15], [1, 0, 0, 0])
    assert ece == pytest.approx(0.45 * 0.5 + 0.15 * 0.5)
    curve = accuracy_coverage([0.9, 0.6, 0.7, 0.2], [1, 1, 0, 0])
    assert curve[0] == (0.25, 1.0, 0.9) and curve[-1] == (1.0, 0.5, 0.2)


def test_escalation_threshold_hits_the_target_share() -> None:
    conf = np.random.default_rng(0).random(1000)
    for rate in (0.0, 0.1, 0.25, 0.5, 0.9):
        t = escalation_threshold(conf, rate)
        assert (conf < t).mean() == pytest.approx(rate, abs=1e-3)
    assert escalation_threshold(conf, 1.0) == math.inf


def test_quality_thresholds_find_the_known_cheapest_cascade() -> None:
    # tier 0 is right exactly when its confidence is >= 0.5 (half the items); tier 1 always right
    rng = np.random.default_rng(1)
    conf0 = rng.random(2000)
    correct = [conf0 >= 0.5, np.ones(2000, dtype=bool)]
    cost = [np.full(2000, 1.0), np.full(2000, 10.0)]
    choice = quality_thresholds([conf0, np.ones(2000)], correct, cost, share=1.0, grid=41)
    assert choice.accuracy == 1.0
    assert choice.thresholds[0] == pytest.approx(0.5, abs=0.03)
    assert choice.cost == pytest.approx(1 + 10 * 0.5, abs=0.35)
    spent, right, esc = simulate_cascade(choice.thresholds, [conf0, np.ones(2000)], correct, cost)
    assert esc[0] == pytest.approx((conf0 < choice.thresholds[0]).mean())
    with pytest.raises(CalibrationError):
        quality_thresholds([conf0, np.ones(2000)], [conf0 >= 0.5, conf0 >= 0.5], cost, share=1.5)


def test_clopper_pearson_matches_known_values() -> None:
    """Closed forms: k = 0 solves (1 − U)^n = δ; k = n − 1 solves 1 − U^n = δ; k = 1 solves
    (1 − U)^n + n U (1 − U)^(n−1) = δ (checked by substitution); k = n is 1."""
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-9)
    assert clopper_pearson_upper(9, 10, 0.05) == pytest.approx(0.95 ** (1 / 10), rel=1e-9)
    assert clopper_pearson_upper(49, 50, 0.1) == pytest.approx(0.9 ** (1 / 50), rel=1e-9)
    for n in (20, 100):
        u = clopper_pearson_upper(1, n, 0.05)
        assert (1 - u) ** n + n * u * (1 - u) ** (n - 1) == pytest.approx(0.05, rel=1e-7)
    assert clopper_pearson_upper(10, 10, 0.1) == 1.0
    from scipy.stats import binom

    for k, n in ((5, 100), (12, 184), (3, 30)):  # the definition: P(Binomial(n, U) <= k) = δ
        assert binom.cdf(k, n, clopper_pearson_upper(k, n, 0.05)) == pytest.approx(0.05, rel=1e-7)


def _guarantee_share(conf: np.ndarray, correct: np.ndarray, alpha: float, delta: float,
                     splits: int = 200) -> float:
    rng = np.random.default_rng(0)
    held = 0
    for _ in range(splits):
        order = rng.permutation(conf.size)
        cal, test = order[: conf.size // 2], order[conf.size // 2:]
        t = risk_threshold(conf[cal], correct[cal], alpha, delta, batch=test.size)
        false_accept = (~correct[test] & (conf[test] >= t)).mean()
        held += false_accept <= alpha
    return held / splits


def test_risk_guarantee_on_synthetic_data() -> None:
    rng = np.random.default_rng(3)
    conf = rng.random(800)
    correct = rng.random(800) < conf  # calibrated confidences
    assert _guarantee_share(conf, correct, alpha=0.1, delta=0.1) >= 0.9


@pytest.mark.data
def test_risk_guarantee_on_recorded_vote_shares(shared_data: Path) -> None:
    """MoT DATE, gpt-3.5 CoT: confidence = vote share of the first sample among 20."""
    table = load_table(shared_data / "mot_date" / "gpt35" / "date_cot1.json")
    conf, correct = [], []
    for row in table.rows:
        record = table.record(row, "gpt-3.5-turbo")
        share, _ = vote_confidence(record.samples[0], record.samples[1:], AnswerKind.EXACT)
        conf.append(share)
        correct.append(record.sample_correct[0])
    conf_a, correct_a = np.array(conf), np.array(correct)
    assert auroc(conf_a, correct_a) > 0.7
    for alpha, delta in ((0.1, 0.1), (0.15, 0.05)):
        assert _guarantee_share(conf_a, correct_a, alpha, delta) >= 1 - delta
    # ...but a guarantee over the next 185 requests is met only by accepting nothing, and the
    # report says so: the unanimous-vote bucket (the strictest threshold) alone has more false
    # accepts than any certified threshold may have on 184 items
    half = conf_a.size // 2
    report = risk_calibration(conf_a[:half], correct_a[:half], 0.1, 0.1, batch=conf_a.size - half)
    unanimous = conf_a[:half] >= 1.0
    assert report.threshold == math.inf and not report.feasible
    assert int((unanimous & ~correct_a[:half]).sum()) > report.max_false_accepts >= 0
    assert report.widening is not None and report.widening[0] == 1.0
    assert report.widening[1] == pytest.approx(unanimous.mean())
    assert "is met only by accepting 0.0% of 184" in (report.warning() or "")
    # the population guarantee on all 369 (what `cascade calibrate` certifies) accepts a lot
    full = risk_calibration(conf_a, correct_a, 0.1, 0.1)
    assert full.feasible and full.accept_rate == pytest.approx((conf_a >= full.threshold).mean())
    assert full.accept_rate > 0.3


def _k_star(n: int, alpha: float, delta: float) -> int:
    """The most false accepts certifiable on n items, by the duality U(k, n) <= α ⇔
    P(Binomial(n, α) <= k) <= δ, scanning every k."""
    from scipy.stats import binom

    return max((k for k in range(n + 1) if binom.cdf(k, n, alpha) <= delta), default=-1)


def test_risk_calibration_reports_coverage_and_what_more_data_would_buy() -> None:
    """20 right answers at 0.9; at 0.5, 18 right and 2 wrong (n = 40, α = δ = 0.1). k*(40) = 1,
    so 0.5 (2 false accepts) is not certified: the threshold is 0.9 and accepts 50 %. A
    perfect ranking could accept (38 + 1) / 40. Asked for 90 %, the warning says how many
    examples would certify the 0.5 threshold, whose false-accept rate is 2 / 40 = 0.05."""
    from scipy.stats import binom

    conf = [0.9] * 20 + [0.5] * 20
    correct = [True] * 20 + [False] * 2 + [True] * 18
    report = risk_calibration(conf, correct, 0.1, 0.1, floor=0.9)
    assert _k_star(40, 0.1, 0.1) == 1 == report.max_false_accepts
    assert report.threshold == 0.9 == risk_threshold(conf, correct, 0.1, 0.1)
    assert (report.accepted, report.false_accepts, report.accept_rate) == (20, 0, 0.5)
    assert report.best_accept_rate == pytest.approx(39 / 40)
    assert report.risk_bound == pytest.approx(1 - 0.1 ** (1 / 40))
    low, high = report.accept_interval  # two-sided 95 % Clopper–Pearson, by its definition
    assert binom.sf(19, 40, low) == pytest.approx(0.025) and binom.cdf(20, 40, high) == pytest.approx(0.025)
    assert report.min_examples == 22  # ln 0.1 / ln 0.9 = 21.85
    needed = next(m for m in range(1, 10**5) if binom.cdf(math.ceil(0.05 * m - 1e-12), m, 0.1) <= 0.1)
    assert report.needed_examples == needed and not report.feasible
    assert report.widening == (0.5, 1.0, 0.05)
    assert f"about {needed} labelled examples would be needed to accept 90%" in (report.warning() or "")
    assert risk_calibration(conf, correct, 0.1, 0.1, floor=0.5).warning() is None


def test_risk_calibration_names_each_reason_for_accepting_nothing() -> None:
    # too few examples for any certificate: 15 < 22
    small = risk_calibration([0.9] * 15, [True] * 15, 0.1, 0.1)
    assert small.threshold == math.inf and small.max_false_accepts == -1 and small.best_accept_rate == 0
    assert "at least 22 are needed" in (small.warning() or "")
    # a perfect estimator could not reach the floor: 30 right of 300, (30 + k*) / 300 < 20 %
    scarce = risk_calibration(np.linspace(0, 1, 300), np.arange(300) >= 270, 0.05, 0.1, floor=0.2)
    assert scarce.best_accept_rate == pytest.approx((30 + _k_star(300, 0.05, 0.1)) / 300)
    assert scarce.best_accept_rate < 0.2 and "even a perfect estimator" in (scarce.warning() or "")
    # the estimator cannot separate: every confidence tied, a third wrong: no data helps
    tied = risk_calibration([0.5] * 300, [i % 3 > 0 for i in range(300)], 0.1, 0.1)
    assert tied.threshold == math.inf and tied.needed_examples is None
    assert "more data will not help" in (tied.warning() or "")
    with pytest.raises(CalibrationError):
        risk_calibration([0.5], [True], 0.1, 0.1, floor=1.5)
    with pytest.raises(CalibrationError):
        risk_calibration([0.5], [True], 0.1, 0.1, batch=0)


def test_risk_guarantee_without_batch_on_a_known_population() -> None:
    """The non-batch variant (what `cascade calibrate` uses): confidence ~ U(0, 1) and correct
    with probability = confidence, so the population false-accept rate of threshold t is
    ∫_t^1 (1 − c) dc = (1 − t)² / 2, exactly. Over 200 calibration draws of 400 items the
    chosen threshold's true rate is ≤ α in ≥ 1 − δ of them — and it accepts a useful share
    (the most any threshold can while ≤ α is 1 − t* = √(2α) = 44.7 %)."""
    rng = np.random.default_rng(11)
    alpha, delta = 0.1, 0.1
    held, accepted = 0, []
    for _ in range(200):
        conf = rng.random(400)
        correct = rng.random(400) < conf
        t = risk_threshold(conf, correct, alpha, delta)
        held += (1 - min(t, 1.0)) ** 2 / 2 <= alpha
        accepted.append(1 - min(t, 1.0))
    assert held / 200 >= 1 - delta
    assert np.mean(accepted) > 0.3  # not vacuous: most of the 44.7 % a perfect choice would get


def test_certificate_sizes_match_brute_force() -> None:
    """k*, the fewest examples for any certificate, and the examples a given false-accept
    rate needs, each against a scan of every n or k by the binomial duality."""
    from scipy.stats import binom

    for n, alpha, delta in ((10, 0.3, 0.1), (22, 0.1, 0.1), (21, 0.1, 0.1), (184, 0.0683, 0.05), (500, 0.2, 0.01)):
        assert max_false_accepts(n, alpha, delta) == _k_star(n, alpha, delta), (n, alpha, delta)
    for alpha, delta in ((0.1, 0.1), (0.05, 0.05), (0.5, 0.25), (0.02, 0.05)):
        m = min_examples(alpha, delta)  # (0.5, 0.25): ln 0.25 / ln 0.5 = 2 exactly
        assert binom.cdf(0, m, alpha) <= delta + 1e-15 < binom.cdf(0, m - 1, alpha)
    ms = np.arange(1, 4000)
    for rate in (0.0, 0.03, 0.05, 0.09):  # 0.09 needs 1577: beyond the first block scanned
        first = ms[binom.cdf(np.ceil(rate * ms - 1e-12), ms, 0.1) <= 0.1][0]
        assert examples_needed(rate, 0.1, 0.1) == first, rate
    assert examples_needed(0.09, 0.1, 0.1, limit=1576) is None
    assert examples_needed(0.09, 0.1, 0.1, limit=1577) == 1577
    assert examples_needed(0.1, 0.1, 0.1) is None and examples_needed(0.2, 0.1, 0.1) is None


def test_risk_calibration_edges() -> None:
    from scipy.stats import binom

    # everything accepted (all right): the interval reaches 1; nothing accepted: it starts at 0
    everything = risk_calibration([0.5] * 30, [True] * 30, 0.1, 0.1)
    assert everything.accepted == 30 and everything.accept_interval[1] == 1.0
    assert everything.accept_interval[0] == pytest.approx(0.025 ** (1 / 30))
    nothing = risk_calibration([0.5] * 30, [False] * 30, 0.1, 0.1)
    assert nothing.accepted == 0 and nothing.accept_interval[0] == 0.0 and nothing.risk_bound == 0.0
    assert nothing.accept_interval[1] == pytest.approx(1 - 0.025 ** (1 / 30))
    # k* = 0 (n = 22 at α = δ = 0.1): a certificate is possible, a perfect estimator accepts
    # exactly the right answers; here the wrong one is tied with the right ones
    assert _k_star(22, 0.1, 0.1) == 0
    tied = risk_calibration([0.9] * 10 + [0.5] * 12, [True] * 10 + [False] + [True] * 11, 0.1, 0.1, floor=0.6)
    assert tied.threshold == 0.9 and tied.best_accept_rate == pytest.approx(21 / 22)
    warning = tied.warning() or ""
    assert "with probability >= 0.9) is met only by accepting 45.5% of 22" in warning
    assert "the strictest threshold accepting at least 60% (0.5, accepts 100.0%)" in warning
    assert "cannot certify" not in warning
    # the widening threshold is the strictest of those accepting >= floor
    wide = risk_calibration([0.9] * 5 + [0.6] * 10 + [0.3] * 10, [False] * 5 + [True] * 20, 0.1, 0.1, floor=0.5)
    assert wide.threshold == math.inf and wide.widening == (0.6, 0.6, 0.2)
    # accepting exactly the floor is enough
    exact = risk_calibration([0.9] * 10 + [0.1] * 30, [True] * 10 + [False] * 30, 0.1, 0.1, floor=0.25)
    assert exact.accept_rate == 0.25 and exact.feasible and exact.widening is None
    assert risk_calibration([0.9] * 30, [True] * 30, 0.1, 0.1, floor=1.0).feasible
    assert risk_calibration([0.9] * 30, [True] * 30, 0.1, 0.1, floor=0.0).feasible
    with pytest.raises(CalibrationError, match=r"^floor must be in \[0, 1\], not 1.5$"):
        risk_calibration([0.5], [True], 0.1, 0.1, floor=1.5)
    assert binom.cdf(0, 22, 0.1) <= 0.1
    # the widening candidate may accept exactly the floor
    edge = risk_calibration([0.9] * 10 + [0.1] * 30, [False] * 2 + [True] * 8 + [False] * 30, 0.1, 0.1, floor=0.25)
    assert edge.threshold == math.inf and edge.widening == (0.9, 0.25, 0.05)
    assert (edge.level, edge.budget, edge.correct, edge.n) == (0.1, 0.1, 8, 40)
    assert max_false_accepts(2, 0.5, 0.25) == 0  # U(0, 2) = 0.5 exactly: certified (<=)
    assert examples_needed(0.0, 0.1, 0.1, limit=22) == 22  # the limit itself is allowed


def test_calibration_summaries_by_hand_and_against_brute_force() -> None:
    # ECE, 10 equal bins: 0.90 and 0.95 share a bin (|0.5 − 0.925| = 0.425); 1.0 is in the last
    assert expected_calibration_error([0.90, 0.95], [1, 0]) == pytest.approx(0.425)
    assert expected_calibration_error([0.95, 0.85], [1, 0]) == pytest.approx(0.45)
    assert expected_calibration_error([1.0, 1.0], [1, 0]) == pytest.approx(0.5)
    # AUROC against every pair counted by hand (ties half), with many ties
    rng = np.random.default_rng(5)
    for _ in range(30):
        c = rng.choice([0.1, 0.5, 0.5, 0.9], size=rng.integers(2, 15))
        y = rng.random(c.size) < 0.5
        if y.all() or not y.any():
            continue
        pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in c[y] for q in c[~y]]
        assert auroc(c, y) == pytest.approx(sum(pairs) / len(pairs))
    with pytest.raises(CalibrationError, match="^AUROC needs both correct and wrong answers$"):
        auroc([0.1, 0.2], [0, 0])
    for k, n, delta in ((-1, 5, 0.1), (6, 5, 0.1), (0, 0, 0.1), (0, 5, 0.0), (0, 5, 1.0)):
        with pytest.raises(CalibrationError, match=f"^bad arguments k={k}, n={n}, delta={delta}$"):
            clopper_pearson_upper(k, n, delta)
    assert clopper_pearson_upper(0, 1, 0.1) == pytest.approx(0.9)  # one trial is enough data


def test_quality_thresholds_beyond_three_tiers_by_coordinate_descent() -> None:
    """Four tiers: tiers 0-2 right exactly when their confidence >= 0.5, the last always right;
    share 1.0 needs each early tier to accept only its right answers. Coordinate descent
    must find what the exhaustive search over the same grid finds."""
    import itertools

    rng = np.random.default_rng(8)
    n = 400
    conf = [rng.random(n) for _ in range(3)] + [np.ones(n)]
    correct = [c >= 0.5 for c in conf[:3]] + [np.ones(n, dtype=bool)]
    cost = [np.full(n, v) for v in (1.0, 2.0, 4.0, 50.0)]
    choice = quality_thresholds(conf, correct, cost, share=1.0, grid=11)
    assert len(choice.thresholds) == 3 and len(choice.escalation) == 3
    grids = [sorted({float(v) for v in np.quantile(c, np.linspace(0, 1, 11))} | {math.inf}) for c in conf[:3]]
    best = math.inf
    for ts in itertools.product(*grids):
        spent, right, _ = simulate_cascade(ts, conf, correct, cost)
        if right.mean() >= 1.0 - 1e-12:
            best = min(best, float(spent.mean()))
    assert choice.accuracy == 1.0 and choice.cost == pytest.approx(best)
