"""The unified fit (``cascade train-router --kind unified``, ``cascade calibrate`` on a unified
policy) cross-fits its priors with the settings of the policy's router artifact: every one of
them, none re-chosen or dropped."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from cascade.routing import CorrectnessData, KnnWeighting, RouterKind, choose_knn, train_knn
from cascade.routing._cv import fold_rows
from cascade.tuning import _unified_data
from cascade.tuning._unified_data import RouterSettings, cross_fitted_priors
from tests.test_knn_prior import _topics


def test_the_unified_fit_cross_fits_with_the_artifacts_prior_not_a_new_choice() -> None:
    """``cascade train-router --kind unified`` / ``cascade calibrate`` cross-fit priors with the
    policy's router's settings: the kNN prior m is one of them (it was dropped, so every fold
    chose its own m by cross-validation)."""

    x, labels, cost = _topics(120, seed=4)
    texts = tuple(f"q{i}" for i in range(len(labels)))
    data = CorrectnessData("topics", texts, ("cheap", "mid", "dear"), labels, cost)
    model = train_knn(data, k=5, weighting=KnnWeighting.UNIFORM, prior=math.inf, embeddings=x)
    settings = RouterSettings.of(model)
    assert settings.prior == math.inf and "prior m=inf" in settings.describe()
    p = cross_fitted_priors(settings, data, x, folds=4)
    for rows in fold_rows(120, 4, 0):  # m = inf: each fold predicts the other folds' mean quality, whatever the neighbours
        rest = np.setdiff1d(np.arange(120), rows)
        assert np.allclose(p[rows], labels[rest].mean(axis=0), atol=1e-6)
    # the topics carry signal, so a prior chosen by CV would not be "means only"
    assert choose_knn(x, labels, cost).prior != math.inf


def test_a_bert_artifacts_max_length_is_kept_for_the_cross_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    bert = SimpleNamespace(kind=RouterKind.BERT, max_length=128, header=SimpleNamespace(metrics={"epochs": 3}))
    settings = RouterSettings.of(bert)  # type: ignore[arg-type]
    assert (settings.epochs, settings.max_length) == (3, 128) and "max_length 128" in settings.describe()
    seen: dict[str, object] = {}
    monkeypatch.setattr(_unified_data, "train_bert", lambda data, **options: seen.update(options) or "model")
    data = CorrectnessData("d", ("a", "b"), ("m",), np.array([[1.0], [0.0]]), None)
    assert _unified_data.train_router(settings, data, np.zeros((2, 384))) == "model"
    assert seen["epochs"] == 3 and seen["max_length"] == 128
