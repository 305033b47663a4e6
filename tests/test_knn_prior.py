"""The kNN router's prior: each model's neighbourhood mean shrunk toward its mean quality on
train by m pseudo-neighbours, m chosen by cross-validation (cascade.routing._cv), persisted
in the router artifact and validated when loaded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cascade.errors import RouterArtifactError, RoutingDataError
from cascade.routing import CorrectnessData, KnnWeighting, choose_knn, load_router_model, train_knn
from cascade.routing._cv import heldout_aiq, hull_aiq, routing_aiq
from cascade.routing._models import knn_shrink
from verifiers._artifacts import save_artifact

COST = (1.0, 3.0, 10.0)


def _noise(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbours carry no signal: embeddings and labels are drawn independently (three
    models right 60 / 75 / 85 % of the time at cost 1 / 3 / 10)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.stack([rng.random(n) < q for q in (0.6, 0.75, 0.85)], axis=1).astype(np.float32)
    return np.pad(x, ((0, 0), (0, 384 - 16))).astype(np.float32), labels, np.tile(COST, (n, 1))


def _topics(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbours carry signal: four tight topics; the cheap model is right on two of them,
    the middle one on three, the dear one on all (10 % of the labels flipped)."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 4, n)
    x = np.eye(4, 16)[topic] + 0.05 * rng.standard_normal((n, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.stack([topic < 2, topic < 3, np.ones(n, dtype=bool)], axis=1).astype(np.float32)
    flip = rng.random(labels.shape) < 0.1
    labels[flip] = 1 - labels[flip]
    return np.pad(x, ((0, 0), (0, 384 - 16))).astype(np.float32), labels, np.tile(COST, (n, 1))


def _data(labels: np.ndarray, cost: np.ndarray | None) -> CorrectnessData:
    return CorrectnessData("toy", tuple(f"q{i}" for i in range(len(labels))), ("cheap", "mid", "dear"),
                           labels, cost)


def _single_models_aiq(labels: np.ndarray, cost: np.ndarray) -> float:
    points = [(float(cost[:, j].sum()), float(labels[:, j].mean())) for j in range(labels.shape[1])]
    return hull_aiq(points, float(cost.sum(axis=0).max()))


def test_knn_shrink_by_hand() -> None:
    num = np.array([[2.0, 0.0]])  # two neighbours of weight 1, both right for model 0, wrong for 1
    den = np.array([[2.0]])
    mean = np.array([0.5, 0.8])
    assert knn_shrink(num, den, mean, 0.0)[0].tolist() == [1.0, 0.0]  # the plain kNN mean
    assert knn_shrink(num, den, mean, 2.0)[0].tolist() == pytest.approx([0.75, 0.4])  # (2 + 2·.5) / 4, 2·.8 / 4
    assert knn_shrink(num, den, mean, math.inf)[0].tolist() == [0.5, 0.8]  # the global means alone


def test_noise_neighbours_get_a_strong_prior_and_route_like_the_single_models() -> None:
    x, labels, cost = _noise(300, 3)
    model = train_knn(_data(labels, cost), embeddings=x)
    # without the prior, CV on this data picks a plain kNN (k=21), whose in-sample hull AIQ
    # beats the single models' by luck; with it, the neighbours barely count
    assert model.prior >= 64, model.prior
    fresh_x, fresh_labels, fresh_cost = _noise(3000, 103)
    p = model.predict([], fresh_x)
    assert routing_aiq(p, fresh_labels, fresh_cost) >= _single_models_aiq(fresh_labels, fresh_cost) - 0.01


def test_signal_neighbours_get_a_weak_prior_and_beat_the_single_models() -> None:
    x, labels, cost = _topics(300, 0)
    model = train_knn(_data(labels, cost), embeddings=x)
    assert model.prior <= 4 and model.k > 1, (model.k, model.prior)
    assert model.header.metrics["cv"] == "aiq" and "cv_score_without_prior" in model.header.metrics
    fresh_x, fresh_labels, fresh_cost = _topics(2000, 1)
    p = model.predict([], fresh_x)
    assert routing_aiq(p, fresh_labels, fresh_cost) > _single_models_aiq(fresh_labels, fresh_cost) + 0.05


def test_without_costs_the_prior_is_chosen_by_squared_error() -> None:
    x, labels, _ = _noise(300, 4)
    noisy = choose_knn(x, labels, None)
    x, labels, _ = _topics(300, 4)
    topical = choose_knn(x, labels, None)
    assert noisy.score < 0 and topical.score < 0  # −MSE
    assert noisy.prior >= 64 and topical.prior <= 4, (noisy.describe(), topical.describe())


def test_heldout_aiq_does_not_reward_lucky_mixtures() -> None:
    """Pure-noise predictions mix the models at random; measured on the half the λ values were
    not chosen on, the mixtures are worth no more than the single models (the constant
    prediction), while predictions that know the labels are worth much more."""
    constant_wins = []
    for seed in range(5):
        _, labels, cost = _noise(400, seed)
        noise = labels.mean(axis=0) + 0.05 * np.random.default_rng(seed).standard_normal(labels.shape)
        constant = np.broadcast_to(labels.mean(axis=0), labels.shape)
        constant_wins.append(heldout_aiq(constant, labels, cost) - heldout_aiq(noise, labels, cost))
        assert heldout_aiq(labels, labels, cost) > heldout_aiq(constant, labels, cost) + 0.1  # the oracle
        assert heldout_aiq(labels, labels, cost) <= routing_aiq(labels, labels, cost) + 1e-9
    assert np.mean(constant_wins) > -0.002, constant_wins


def test_fixed_settings_skip_cross_validation() -> None:
    x, labels, cost = _topics(60, 2)
    model = train_knn(_data(labels, cost), embeddings=x, k=3, weighting=KnnWeighting.UNIFORM, prior=2.0)
    assert (model.k, model.weighting, model.prior) == (3, KnnWeighting.UNIFORM, 2.0)
    assert "cv_score" not in model.header.metrics
    _sims, index = model.index.top(x[:5], 3)
    expected = (labels[index].sum(axis=1) + 2.0 * labels.mean(axis=0)) / (3 + 2.0)
    assert model.predict([], x[:5]) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(RoutingDataError, match="`prior` must be a number ≥ 0"):
        train_knn(_data(labels, cost), embeddings=x, prior=-1.0)
    with pytest.raises(RoutingDataError, match="`k` must be a whole number"):
        train_knn(_data(labels, cost), embeddings=x, k=0)


@pytest.mark.parametrize("prior", [0.0, 8.0, math.inf])
def test_the_prior_round_trips_through_the_artifact(prior: float, tmp_path: Path) -> None:
    x, labels, cost = _topics(60, 3)
    model = train_knn(_data(labels, cost), embeddings=x, k=5, weighting=KnnWeighting.DISTANCE, prior=prior)
    folder = model.save(tmp_path / "knn")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["prior"] == ("inf" if math.isinf(prior) else prior)  # strict JSON: no Infinity
    again = load_router_model(folder)
    assert again.prior == prior and again.k == 5 and again.weighting is KnnWeighting.DISTANCE  # type: ignore[attr-defined]
    probe = _topics(20, 9)[0]
    assert np.allclose(again.predict([], probe), model.predict([], probe), atol=2e-3)  # float16 neighbours
    if math.isinf(prior):
        assert np.allclose(again.predict([], probe), labels.mean(axis=0)[None, :], atol=1e-6)


def test_artifacts_without_the_field_load_as_the_plain_knn_and_bad_values_are_named(tmp_path: Path) -> None:
    x, labels, cost = _topics(60, 3)
    folder = train_knn(_data(labels, cost), embeddings=x, k=4, weighting=KnnWeighting.UNIFORM,
                       prior=16.0).save(tmp_path / "knn")
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {"embeddings": x.astype(np.float16), "labels": labels.astype(np.uint8)}
    old = {k: v for k, v in meta.items() if k != "prior"}  # written before the field
    save_artifact(tmp_path / "old", "router-knn", old, arrays)
    loaded = load_router_model(tmp_path / "old")
    assert loaded.prior == 0.0  # type: ignore[attr-defined]
    _sims, index = loaded.index.top(x[:5], 4)
    assert loaded.predict([], x[:5]) == pytest.approx(labels[index].mean(axis=1), abs=1e-6)
    for field, value, message in (("prior", -1, "`prior` must be a number ≥ 0 or inf"),
                                  ("prior", "lots", "`prior` must be a number ≥ 0 or inf"),
                                  ("prior", float("nan"), "`prior` must be a number ≥ 0 or inf"),
                                  ("prior", True, "`prior` must be a number ≥ 0 or inf"),
                                  ("k", 0, "`k` must be a whole number"),
                                  ("k", 2.5, "`k` must be a whole number"),
                                  ("k", "3", "`k` must be a whole number")):
        save_artifact(tmp_path / f"bad-{field}-{value}", "router-knn", {**meta, field: value}, arrays)
        with pytest.raises(RouterArtifactError, match=f"meta.json: {message}"):
            load_router_model(tmp_path / f"bad-{field}-{value}")


def test_choice_describes_its_prior() -> None:
    x, labels, cost = _topics(120, 5)
    choice = choose_knn(x, labels, cost, ks=(5,), weightings=(KnnWeighting.UNIFORM,), priors=(4.0,))
    assert choice.describe() == "k=5, uniform weighting, prior m=4"
    assert list(choice.scores) == ["k=5, uniform, m=4"]
    assert math.isnan(choice.score_without_prior)  # m = 0 was not tried
    gone = choose_knn(x, labels, cost, priors=(math.inf,))
    assert gone.prior == math.inf and gone.describe().startswith("prior m=inf")


@pytest.mark.models  # MiniLM embeds the fixture (found by scripts/check_markers.sh)
def test_train_router_writes_the_chosen_prior(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    fixture = Path(__file__).parent / "fixtures" / "routing_routerbench.csv"
    trained = CliRunner().invoke(app, ["train-router", "--kind", "knn", "--data", str(fixture),
                                       "--out", str(tmp_path / "knn")])
    assert trained.exit_code == 0, trained.output
    meta = json.loads((tmp_path / "knn" / "meta.json").read_text())
    assert meta["prior"] == "inf" or (isinstance(meta["prior"], float) and meta["prior"] >= 0)
    assert meta["metrics"]["cv"] in ("aiq", "-mse") and "cv_score" in meta["metrics"]
    again = load_router_model(tmp_path / "knn")
    assert again.prior == (math.inf if meta["prior"] == "inf" else meta["prior"])  # type: ignore[attr-defined]
    assert again.k == meta["k"] and again.weighting.value == meta["weighting"]  # type: ignore[attr-defined]

