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
    expected_calibration_error,
    quality_thresholds,
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
