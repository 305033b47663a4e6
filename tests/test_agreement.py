"""Agreement across models as a confidence signal, without the engine: the agreement tables,
the consensus, the estimator's share, learned weights on synthetic data with a known answer,
and the ensemble plan search."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from verifiers import (
    AgreementEstimator,
    AgreementModel,
    AgreementRow,
    AnswerKind,
    AnswerSet,
    ArtifactError,
    CalibrationError,
    Candidate,
    EstimateContext,
    Goal,
    Peer,
    TrainingDataError,
    agreement_matrix,
    auroc,
    consensus,
    fit_agreement,
    frontier,
    load_agreement,
    pick,
    search,
)

K = AnswerKind

# --- 1. agreement tables --------------------------------------------------------------------


def test_numbers_agree_when_equal_after_normalising() -> None:
    m = agreement_matrix(["#### 1,000", "the answer is 1000", "5", "no number here", None], K.NUMBER)
    assert m.dtype == np.int8 and m.shape == (5, 5)
    assert m[0, 1] == m[1, 0] == 1
    assert m[0, 2] == m[1, 2] == m[2, 0] == 0
    assert m[2, 2] == 1
    assert (m[3] == -1).all() and (m[:, 3] == -1).all()  # no number: unknown, even to itself
    assert (m[4] == -1).all() and (m[:, 4] == -1).all()  # no text
    assert (m == m.T).all()


def test_choice_letters_agree_in_any_spelling() -> None:
    m = agreement_matrix(["Answer: (B)", "b", "**B**", "C"], K.CHOICE)
    assert m[:3, :3].tolist() == [[1] * 3] * 3
    assert m[3, :3].tolist() == [0, 0, 0] and m[:3, 3].tolist() == [0, 0, 0]
    assert m[3, 3] == 1


def test_exact_strings() -> None:
    m = agreement_matrix(["Paris.", "  the answer is  PARIS", "Answer: paris", "Lyon"], K.EXACT)
    assert m[:3, :3].tolist() == [[1] * 3] * 3
    assert m[3, :3].tolist() == [0, 0, 0]


COUNT = '''def count(xs):
    """How many there are."""
    n = len(xs)  # the length
    return n
'''
COUNT_RENAMED = '''Here you go:
```python
def size(items):
    # count them
    total = len(items)
    return total
```
'''
COUNT_SORTED = '''def count(xs):
    n = sorted(xs)
    return n
'''


def test_code_equal_up_to_names_docstrings_and_comments() -> None:
    m = agreement_matrix([COUNT, COUNT_RENAMED, COUNT_SORTED], K.CODE)
    assert m[0, 1] == m[1, 0] == 1
    assert m[0, 2] == m[1, 2] == 0  # len is not sorted


VECTORS = {
    "Paris": [1.0, 0.0],
    "It is Paris": [0.9, 0.1],  # cosine 0.994 with "Paris"
    "Paris, France": [0.6, 0.8],  # cosine 0.6 with "Paris"
    "London": [0.0, 1.0],
}
embedded: list[list[str]] = []


def embed(texts):  # type: ignore[no-untyped-def]
    embedded.append(list(texts))
    return np.array([VECTORS[t] for t in texts])


def test_free_text_near_duplicates_by_embedding() -> None:
    m = agreement_matrix(["Paris", "It is Paris", "London", None], K.TEXT, embed=embed, similarity=0.85)
    assert m[0, 1] == m[1, 0] == 1
    assert m[0, 2] == m[1, 2] == 0
    assert (m[3] == -1).all()
    assert embedded[-1] == ["Paris", "It is Paris", "London"]  # no text: not embedded


def test_similarity_threshold_decides() -> None:
    texts = ["Paris", "Paris, France", "It is Paris"]
    loose = agreement_matrix(texts, K.TEXT, embed=embed, similarity=0.59)
    strict = agreement_matrix(texts, K.TEXT, embed=embed, similarity=0.61)
    stricter = agreement_matrix(texts, K.TEXT, embed=embed, similarity=0.999)
    assert loose[0, 1] == 1 and strict[0, 1] == 0
    assert strict[0, 2] == 1 and stricter[0, 2] == 0
    assert stricter[0, 0] == 1  # an answer always agrees with itself


def test_free_text_without_an_encoder_compares_normalised_text() -> None:
    m = agreement_matrix(["It is  Paris", "it is paris", "Paris"], K.TEXT)
    assert m[0, 1] == 1 and m[0, 2] == 0


def test_nothing_extractable_is_all_unknown() -> None:
    m = agreement_matrix(["no digits", None], K.NUMBER)
    assert (m == -1).all()


# --- 2. consensus ---------------------------------------------------------------------------


def test_consensus_majority_wins() -> None:
    m = agreement_matrix(["A", "C", "C"], K.CHOICE)
    assert consensus(m, [1, 1, 1]) == 1
    # the majority wins even over a heavier single member (2 > 1.5)
    assert consensus(m, [1.5, 1, 1]) == 1


def test_consensus_weighted_majority() -> None:
    m = agreement_matrix(["A", "C", "C"], K.CHOICE)
    assert consensus(m, [3, 1, 1]) == 0


def test_consensus_one_one_tie_goes_to_larger_weight() -> None:
    m = agreement_matrix(["A", "C"], K.CHOICE)
    assert consensus(m, [1, 2]) == 1
    assert consensus(m, [2, 1]) == 0


def test_consensus_equal_weight_tie_goes_to_earlier_member() -> None:
    m = agreement_matrix(["A", "C", "D"], K.CHOICE)
    assert consensus(m, [1, 1, 1]) == 0
    m = agreement_matrix(["A", "C", "C", "A"], K.CHOICE)
    assert consensus(m, [1, 1, 1, 1]) == 0


def test_consensus_member_without_answer_never_wins() -> None:
    m = agreement_matrix(["no letter here", "B"], K.CHOICE)
    assert consensus(m, [1, 1]) == 1
    assert consensus(m, [5, 1]) == 1  # even when it is heavier
    m = agreement_matrix(["no letter", "still none", "C"], K.CHOICE)
    assert consensus(m, [3, 2, 0.5]) == 2


def test_consensus_member_without_answer_never_wins_over_a_zero_weight_answer() -> None:
    """Weights may be 0 (the estimator accepts any finite non-negative weight, and the plan
    search uses a model's accuracy, which can be 0): the one member with an answer must
    still be the ensemble's answer, not the member that has none."""
    m = agreement_matrix(["no letter here", "B"], K.CHOICE)
    assert consensus(m, [1.0, 0.0]) == 1


def test_consensus_nobody_answers_is_the_first_member() -> None:
    m = agreement_matrix(["none", None, "nope"], K.CHOICE)
    assert consensus(m, [1, 5, 2]) == 0


def test_estimator_pick_uses_its_weights() -> None:
    est = AgreementEstimator(K.CHOICE, weights={"b": 3.0})
    assert est.pick(["A", "C"], ["a", "b"]) == 1
    assert AgreementEstimator(K.CHOICE).pick(["A", "C"], ["a", "b"]) == 0


# --- 3. the estimator -----------------------------------------------------------------------


def peers(*pairs: tuple[str, str | None], earlier: bool = False, tier: str = "") -> list[Peer]:
    return [Peer(source, text, earlier, tier) for source, text in pairs]


def test_unweighted_share_of_agreeing_answers() -> None:
    est = AgreementEstimator(K.CHOICE)
    confidence, details = est.judge("B", "m0", peers(("m1", "b"), ("m2", "(B)"), ("m3", "C")))
    assert confidence == pytest.approx(0.75)
    assert details["members"] == 4
    assert details["agreed"] == ["m1", "m2"] and details["disagreed"] == ["m3"]
    assert details["no_answer"] == []
    confidence, _ = est.judge("B", "m0", peers(("m1", "B"), ("m2", "B")))
    assert confidence == 1.0
    confidence, _ = est.judge("B", "m0", peers(("m1", "C"), ("m2", "D")))
    assert confidence == pytest.approx(1 / 3)


def test_peer_without_extractable_answer_is_not_counted() -> None:
    est = AgreementEstimator(K.CHOICE)
    confidence, details = est.judge("B", "m0", peers(("m1", "B"), ("m2", "nothing useful"), ("m3", "C")))
    assert confidence == pytest.approx(2 / 3)
    assert details["no_answer"] == ["m2"]


def test_hand_weights() -> None:
    est = AgreementEstimator(K.CHOICE, weights={"strong": 3.0, "weak": 0.5})
    confidence, _ = est.judge("B", "me", peers(("strong", "B"), ("weak", "C")))
    assert confidence == pytest.approx((1 + 3) / (1 + 3 + 0.5))
    confidence, _ = est.judge("B", "me", peers(("strong", "C"), ("weak", "B")))
    assert confidence == pytest.approx((1 + 0.5) / (1 + 3 + 0.5))
    # the candidate's own weight counts too
    confidence, _ = est.judge("B", "strong", peers(("weak", "C")))
    assert confidence == pytest.approx(3 / 3.5)


def test_earlier_false_ignores_earlier_tiers() -> None:
    evidence = [*peers(("m1", "C")), *peers(("cheap", "B"), ("cheaper", "B"), earlier=True, tier="t0")]
    with_earlier, details = AgreementEstimator(K.CHOICE, earlier=True).judge("B", "m0", evidence)
    without, details_without = AgreementEstimator(K.CHOICE, earlier=False).judge("B", "m0", evidence)
    assert with_earlier == pytest.approx(3 / 4)
    assert details["agreed"] == ["t0/cheap", "t0/cheaper"] and details["disagreed"] == ["m1"]
    assert without == pytest.approx(1 / 2)
    assert details_without["agreed"] == [] and details_without["members"] == 2


def test_min_members_with_failed_members_is_zero_confidence() -> None:
    est = AgreementEstimator(K.CHOICE, min_members=3)
    confidence, details = est.judge("B", "m0", peers(("m1", "B"), ("m2", None)))
    assert confidence == 0.0
    assert "min_members" in str(details["reason"]) and details["members"] == 2
    confidence, _ = est.judge("B", "m0", peers(("m1", "B"), ("m2", "B")))
    assert confidence == 1.0
    # min_members 1: the candidate alone is enough (and agrees with itself)
    assert AgreementEstimator(K.CHOICE, min_members=1).judge("B", "m0", [])[0] == 1.0
    assert AgreementEstimator(K.CHOICE).judge("B", "m0", [])[0] == 0.0


def test_candidate_without_extractable_answer_is_zero() -> None:
    est = AgreementEstimator(K.NUMBER)
    confidence, details = est.judge("I do not know", "m0", peers(("m1", "42"), ("m2", "42")))
    assert confidence == 0.0
    assert "no answer" in str(details["reason"])


def test_details_name_tier_and_model() -> None:
    est = AgreementEstimator(K.CHOICE)
    evidence = [*peers(("m1", "B"), ("m2", "D"), tier="ens"),
                *peers(("tiny", "B"), ("tiny2", None), earlier=True, tier="t0")]
    _, details = est.judge("B", "m0", evidence)
    assert details["agreed"] == ["ens/m1", "t0/tiny"]
    assert details["disagreed"] == ["ens/m2"]
    assert details["no_answer"] == ["t0/tiny2"]
    assert details["members"] == 4


@pytest.mark.anyio
async def test_estimate_through_the_context() -> None:
    est = AgreementEstimator(K.NUMBER)
    ctx = EstimateContext((), Candidate("#### 1,000", "m0"), "t1",
                          peers=tuple(peers(("m1", "1000"), ("m2", "999"), ("m3", "the answer is 1000"))))
    estimate = await est.estimate(ctx)
    assert estimate.confidence == pytest.approx(0.75)
    assert estimate.details["kind"] == "number" and estimate.details["compared_by"] == "answers"
    assert estimate.details["agreed"] == ["m1", "m3"]
    assert estimate.usage.calls == 0 and estimate.usage.cost == 0
    assert est.name == "agreement-number" and est.requires == frozenset()


@pytest.mark.anyio
async def test_estimate_of_free_text_uses_the_encoder() -> None:
    est = AgreementEstimator(K.TEXT, embed=embed, similarity=0.85)
    ctx = EstimateContext((), Candidate("Paris", "m0"),
                          peers=tuple(peers(("m1", "It is Paris"), ("m2", "London"))))
    estimate = await est.estimate(ctx)
    assert estimate.confidence == pytest.approx(2 / 3)
    assert estimate.details["agreed"] == ["m1"] and estimate.details["disagreed"] == ["m2"]


@pytest.mark.parametrize("kw", [{"min_members": 0}, {"weights": {"m": -1.0}},
                                {"weights": {"m": float("inf")}}, {"run_tests": True}])
def test_bad_estimator_settings(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AgreementEstimator(K.CHOICE, **kw)  # type: ignore[arg-type]


# --- 4. learned weights ---------------------------------------------------------------------

SOURCES = ("C", "R", "N")


def synthetic_rows(n: int = 600, seed: int = 1) -> list[AgreementRow]:
    """The candidate model C is right 60 % of the time; R is right 95 %, N 55 %. A peer that is
    right agrees with a right candidate and disagrees with a wrong one; a wrong peer agrees
    with a wrong candidate one time in five."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        correct = rng.random() < 0.6
        agree: dict[str, bool | None] = {}
        for peer, p in (("R", 0.95), ("N", 0.55)):
            peer_right = rng.random() < p
            if correct:
                agree[peer] = peer_right
            else:
                agree[peer] = (not peer_right) and rng.random() < 0.2
        rows.append(AgreementRow("C", agree, correct))
    return rows


@pytest.fixture(scope="module")
def learned() -> tuple[AgreementModel, np.ndarray, list[AgreementRow]]:
    rows = synthetic_rows()
    model, oof = fit_agreement(rows, SOURCES, K.CHOICE)
    return model, oof, rows


def test_learned_weights_trust_the_reliable_model(learned) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = learned
    m = len(SOURCES)
    assert model.coef.shape == (3 * m,)
    agrees_r, agrees_n = model.coef[m + SOURCES.index("R")], model.coef[m + SOURCES.index("N")]
    assert agrees_r > agrees_n
    assert agrees_r > 0


def test_out_of_fold_confidence_separates_right_from_wrong(learned) -> None:  # type: ignore[no-untyped-def]
    _, oof, rows = learned
    correct = np.array([r.correct for r in rows])
    assert oof.shape == (len(rows),)
    assert ((oof >= 0) & (oof <= 1)).all()
    assert auroc(oof, correct) > 0.8


def test_reliable_agreement_means_more_than_noisy_agreement(learned) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = learned
    only_r = model.predict("C", {"R": True, "N": False})
    only_n = model.predict("C", {"R": False, "N": True})
    both = model.predict("C", {"R": True, "N": True})
    neither = model.predict("C", {"R": False, "N": False})
    assert only_r > only_n
    assert both >= only_r and neither <= only_n
    assert 0.0 <= neither <= both <= 1.0


def test_learned_confidence_is_calibrated(learned) -> None:  # type: ignore[no-untyped-def]
    model, oof, rows = learned
    accuracy = float(np.mean([r.correct for r in rows]))
    assert abs(float(oof.mean()) - accuracy) <= 0.05
    fitted = np.array([model.predict(r.source, r.agree) for r in rows])
    assert abs(float(fitted.mean()) - accuracy) <= 0.05


def test_estimator_with_a_learned_model_returns_its_probability(learned) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = learned
    est = AgreementEstimator(K.CHOICE, model=model)
    assert est.name == "agreement-choice-learned"
    confidence, details = est.judge("B", "C", peers(("R", "B"), ("N", "D")))
    assert confidence == pytest.approx(model.predict("C", {"R": True, "N": False}))
    assert details["agreed"] == ["R"]
    # a model that gave no answer is neither agreement nor disagreement
    confidence, _ = est.judge("B", "C", peers(("R", None), ("N", "B")))
    assert confidence == pytest.approx(model.predict("C", {"R": None, "N": True}))


def test_all_correct_rows_cannot_be_learned() -> None:
    rows = [AgreementRow("C", {"R": True, "N": True}, True) for _ in range(50)]
    with pytest.raises(TrainingDataError):
        fit_agreement(rows, SOURCES, K.CHOICE)
    with pytest.raises(TrainingDataError):
        fit_agreement(synthetic_rows(n=6), SOURCES, K.CHOICE)  # too few rows
    with pytest.raises(TrainingDataError):
        fit_agreement([], SOURCES, K.CHOICE)


PATTERNS = [("C", {"R": True, "N": False}), ("C", {"R": False, "N": True}),
            ("C", {"R": True, "N": True}), ("C", {"R": None, "N": False}),
            ("R", {"C": True}), ("other", {"unknown-model": True})]


def test_save_and_load_round_trip(learned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = learned
    folder = model.save(tmp_path / "weights")
    loaded = load_agreement(folder)
    assert loaded.sources == model.sources and loaded.kind is K.CHOICE
    assert loaded.intercept == model.intercept
    np.testing.assert_array_equal(loaded.coef, model.coef)
    for source, agree in PATTERNS:
        assert loaded.predict(source, agree) == model.predict(source, agree)


def test_tampered_meta_is_refused(learned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = learned
    folder = model.save(tmp_path / "weights")
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["intercept"] = meta["intercept"] + 5.0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError) as info:
        load_agreement(folder)
    assert "meta.json" in str(info.value)


def test_missing_directory_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        load_agreement(tmp_path / "nothing-here")


def test_learned_model_of_another_answer_kind_is_refused(learned) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = learned
    with pytest.raises(ValueError, match="choice"):
        AgreementEstimator(K.NUMBER, model=model)
    AgreementEstimator(K.CHOICE, model=model)  # the same kind is fine


# --- 5. the ensemble plan search --------------------------------------------------------------

LETTERS = "ABCDE"
COSTS = (1.0, 2.0, 3.0, 50.0)


def synthetic_answers(n: int = 200, seed: int = 3) -> AnswerSet:
    """cheap-a and cheap-b are right 80 % of the time (and then agree); wrong, each gives its
    own wrong letter. mid is right 50 %. dear is always right and costs 50."""
    rng = random.Random(seed)
    models = ("cheap-a", "cheap-b", "mid", "dear")
    texts: list[list[str]] = [[] for _ in models]
    correct = np.zeros((n, len(models)), dtype=bool)
    for q in range(n):
        gold = rng.randrange(5)
        for j, p in enumerate((0.8, 0.8, 0.5, 1.0)):
            right = rng.random() < p
            letter = gold if right else (gold + 1 + j) % 5
            texts[j].append(f"The answer is ({LETTERS[letter]})")
            correct[q, j] = right
    cost = np.tile(np.array(COSTS), (n, 1))
    return AnswerSet(models, tuple(tuple(t) for t in texts), correct, cost)


@pytest.fixture(scope="module")
def searched() -> tuple[AnswerSet, list]:  # type: ignore[type-arg]
    answers = synthetic_answers()
    return answers, search(answers, K.CHOICE)


def test_search_picks_the_cheap_agreeing_pair(searched) -> None:  # type: ignore[no-untyped-def]
    answers, found = searched
    hull = frontier(found)
    assert hull and all(a.cost <= b.cost and a.accuracy < b.accuracy for a, b in zip(hull, hull[1:]))
    chosen = pick(hull, Goal.QUALITY, 0.99, answers)
    plan = chosen.learned.plan
    assert {0, 1} <= set(plan.ensemble)
    assert plan.last == 3
    dear_alone = float(answers.cost[:, 3].sum())
    assert chosen.accuracy >= 0.99
    assert chosen.cost < 0.6 * dear_alone
    # the same point is the best on the whole set too
    assert pick(found, Goal.QUALITY, 0.99, answers).cost == pytest.approx(chosen.cost)


def test_pick_refuses_an_unreachable_target(searched) -> None:  # type: ignore[no-untyped-def]
    answers, found = searched
    with pytest.raises(CalibrationError):
        pick(found, Goal.QUALITY, 1.01, answers)
    with pytest.raises(CalibrationError):
        pick(found, Goal.COST, 0.001, answers)
