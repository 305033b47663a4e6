"""The kNN + MF router (``RouterKind.KNN_MF``): the mean of a kNN's and an MF's P(ok) trained
on the same queries, one artifact holding both, loaded with every hash checked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cascade.errors import RouterArtifactError
from cascade.routing import (
    CorrectnessData,
    KnnWeighting,
    MeanModel,
    MfSettings,
    RouterKind,
    load_router_model,
    train_knn,
    train_knn_mf,
    train_mf,
)
from tests.test_knn_prior import _topics

MODELS = ("cheap", "mid", "dear")


def _data(n: int = 120, seed: int = 5) -> tuple[CorrectnessData, np.ndarray]:
    x, labels, cost = _topics(n, seed)
    return CorrectnessData("topics", tuple(f"q{i}" for i in range(n)), MODELS, labels, cost), x


def test_it_predicts_the_mean_of_its_parts_trained_with_the_same_settings() -> None:
    data, x = _data()
    mf = MfSettings(dim=16, epochs=100, weight_decay=1e-4)
    both = train_knn_mf(data, knn_k=7, weighting=KnnWeighting.UNIFORM, prior=4.0, mf=mf, embeddings=x)
    knn = train_knn(data, k=7, weighting=KnnWeighting.UNIFORM, prior=4.0, embeddings=x)
    alone = train_mf(data, dim=16, epochs=100, weight_decay=1e-4, embeddings=x)
    probe = x[:10]
    expected = (knn.predict([], probe) + alone.predict([], probe)) / 2
    assert both.kind is RouterKind.KNN_MF and both.models == MODELS
    assert np.allclose(both.predict([], probe), expected, atol=1e-6)
    assert not np.allclose(expected, knn.predict([], probe))  # the MF half matters


def test_settings_left_open_are_chosen_by_cross_validation_for_each_part() -> None:
    data, x = _data()
    both = train_knn_mf(data, embeddings=x)
    assert "cv_score" in both.knn.header.metrics and "cv_score" in both.mf.header.metrics
    assert both.mf.header.metrics["dim"] in (16, 64)


def test_the_artifact_round_trips_both_parts(tmp_path: Path) -> None:
    data, x = _data()
    both = train_knn_mf(data, knn_k=5, weighting=KnnWeighting.DISTANCE, prior=math.inf,
                        mf=MfSettings(dim=16, epochs=100, weight_decay=1e-2), embeddings=x)
    folder = both.save(tmp_path / "router")
    again = load_router_model(folder)
    assert isinstance(again, MeanModel)
    assert (again.knn.k, again.knn.weighting, again.knn.prior) == (5, KnnWeighting.DISTANCE, math.inf)
    assert again.mf.header.metrics["dim"] == 16 and again.mf.header.metrics["weight_decay"] == 1e-2
    assert np.allclose(again.predict([], x[:20]), both.predict([], x[:20]), atol=2e-3)  # float16 index


def test_a_tampered_or_incomplete_artifact_is_refused(tmp_path: Path) -> None:
    data, x = _data()
    folder = train_knn_mf(data, knn_k=5, weighting=KnnWeighting.UNIFORM, prior=0.0,
                          mf=MfSettings(dim=16, epochs=100, weight_decay=1e-4), embeddings=x).save(tmp_path / "r")
    meta = json.loads((folder / "meta.json").read_text())
    meta["k"] = 7
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RouterArtifactError, match="meta.json"):
        load_router_model(folder)


def test_parts_of_different_models_are_refused() -> None:
    data, x = _data()
    knn = train_knn(data, k=5, weighting=KnnWeighting.UNIFORM, prior=0.0, embeddings=x)
    other = CorrectnessData("other", data.texts, ("a", "b", "c"), data.labels, data.costs)
    mf = train_mf(other, dim=16, epochs=100, weight_decay=1e-4, embeddings=x)
    with pytest.raises(RouterArtifactError, match="different models"):
        MeanModel(knn, mf)
