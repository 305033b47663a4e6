"""Graded quality scores end to end: the reader accepts scores in [0, 1], the bench measures
mean quality through the engine, the oracle and its frontier, calibration and routers train on
graded targets. Every expected number below is computed by hand from the fixture."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cascade.bench._bench import run_suite
from cascade.bench._cli import csv_suite
from cascade.bench._metrics import aiq
from cascade.errors import ReplayDataError
from cascade.providers import load_table
from cascade.routing import KnnWeighting, correctness_data, load_router_model, train_knn
from verifiers import auroc, simulate_cascade
from verifiers._agreement_search import AnswerSet, Plan, learn, matrices
from verifiers._calibrate import accuracy_coverage
from verifiers import AnswerKind

pytestmark = pytest.mark.anyio

# Four queries, two models; quality cells are graded (an LLM judge's score in [0, 1]).
QUALITY = {"cheap": (0.5, 0.25, 1.0, 0.0), "dear": (1.0, 0.75, 0.5, 0.75)}
COST = {"cheap": 0.01, "dear": 0.1}


def write_graded(path: Path, quality: dict[str, tuple[object, ...]] = QUALITY) -> None:
    models = list(quality)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["", "sample_id", "prompt", "eval_name", *models,
                      *(f"{m}|model_response" for m in models), *(f"{m}|total_cost" for m in models),
                      "oracle_model_to_route_to"])
        for i in range(len(quality[models[0]])):
            out.writerow([i, f"s{i}", f"['Question {i}: explain tides.']", "graded",
                          *(quality[m][i] for m in models), *(f"['answer {m} {i}']" for m in models),
                          *(COST[m] for m in models), "cheap"])


def test_reader_keeps_graded_scores_and_maps_booleans(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    write_graded(path, {"cheap": ("0.4074074074", "True", "false", "1"), "dear": ("0", "", "0.5", "1.0")})
    table = load_table(path)
    cheap = [table.record(r, "cheap").correct for r in table.rows]
    dear = [table.record(r, "dear").correct for r in table.rows]
    assert cheap == [pytest.approx(0.4074074074), 1.0, 0.0, 1.0]
    assert dear == [0.0, None, 0.5, 1.0]


@pytest.mark.parametrize("cell", ["1.5", "-0.1", "nan", "good", "7"])
def test_quality_outside_unit_interval_names_file_row_and_column(tmp_path: Path, cell: str) -> None:
    path = tmp_path / "bad.csv"
    write_graded(path, {"cheap": (0.5, cell, 1.0, 0.0), "dear": (1.0, 0.75, 0.5, 0.75)})
    with pytest.raises(ReplayDataError) as raised:
        load_table(path)
    message = str(raised.value)
    assert "bad.csv" in message and "row 2" in message and "cheap" in message and cell in message


async def test_bench_measures_mean_quality_and_the_oracle_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "graded.csv"
    write_graded(path)
    suite = csv_suite(path, path, tmp_path / "out")  # train = test: every row on both sides
    report = await run_suite(suite, tmp_path, [], bootstrap_rounds=0)
    m = report.metrics
    # cheap: (0.5 + 0.25 + 1 + 0) / 4 = 0.4375 at 4 × 0.01; dear: 3 / 4 = 0.75 at 0.4
    assert m["cheap"]["points"] == [[pytest.approx(0.04), pytest.approx(0.4375)]]
    assert m["dear"]["points"] == [[pytest.approx(0.4), pytest.approx(0.75)]]
    # oracle: per query the best quality, the cheaper on ties: dear, dear, cheap, dear
    assert m["oracle"]["points"] == [[pytest.approx(0.31), pytest.approx(0.875)]]
    # random: the segment (0.04, 0.4375)-(0.4, 0.75), c_max 0.4: 0.36 × 0.59375 / 0.4
    assert m["random"]["aiq"] == pytest.approx(0.534375)
    # oracle frontier (quality − λ·cost): λ < 5.56 the oracle; 5.56 < λ < 8.33 queries 0 and 1
    # move to cheap (0.13, 0.625); beyond, cheap everywhere (0.04, 0.4375)
    frontier = {(round(c, 6), round(a, 6)) for c, a in m["oracle frontier"]["points"]}
    assert frontier == {(0.31, 0.875), (0.13, 0.625), (0.04, 0.4375)}
    assert m["oracle frontier"]["aiq"] == pytest.approx(aiq([(0.31, 0.875), (0.13, 0.625), (0.04, 0.4375)], 0.4))


def test_the_bench_cli_runs_a_graded_file_end_to_end(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    path = tmp_path / "graded.csv"
    write_graded(path)
    result = CliRunner().invoke(app, ["bench", "--csv", str(path), "--train", str(path), "--method", "none",
                                      "--out", str(tmp_path / "out"), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "bench.md").read_text()
    assert "| cheap | 0.438, $0.0400" in text and "| oracle frontier |" in text


def test_cascade_simulation_and_calibration_use_mean_quality() -> None:
    confidence = [np.array([0.9, 0.2, 0.8, 0.1])]
    quality = [np.array(QUALITY["cheap"]), np.array(QUALITY["dear"])]
    cost = [np.full(4, 0.01), np.full(4, 0.1)]
    spent, right, escalation = simulate_cascade([0.5], confidence + [np.zeros(4)], quality, cost)
    # accepted: queries 0 and 2 (cheap 0.5, 1.0); escalated: 1 and 3 (dear 0.75, 0.75)
    assert right.tolist() == [0.5, 0.75, 1.0, 0.75]
    assert spent.sum() == pytest.approx(0.04 + 0.2) and escalation == [0.5]
    # good = quality >= 0.5: cheap's good answers (0, 2) have confidences 0.9, 0.8 > 0.2, 0.1
    assert auroc(confidence[0], quality[0]) == 1.0
    top = accuracy_coverage(confidence[0], quality[0])[0]
    assert top == (0.25, 0.5, 0.9)  # the strictest threshold keeps query 0 (quality 0.5)


def test_routers_learn_graded_targets(tmp_path: Path) -> None:
    path = tmp_path / "graded.csv"
    write_graded(path)
    data = correctness_data(path)
    assert data.labels[:, 0].tolist() == [0.5, 0.25, 1.0, 0.0]
    embeddings = np.eye(4, 384, dtype=np.float32)  # four orthogonal queries
    model = train_knn(data, k=4, embeddings=embeddings, weighting=KnnWeighting.UNIFORM)
    predicted = model.predict(["q"], np.eye(1, 384, dtype=np.float32))
    # uniform weights over all four queries: each model's mean quality
    assert predicted[0].tolist() == pytest.approx([0.4375, 0.75])
    model.save(tmp_path / "knn")
    again = load_router_model(tmp_path / "knn")
    assert np.allclose(again.labels, data.labels)  # graded labels survive the artifact
    assert again.weighting is KnnWeighting.UNIFORM and again.k == 4


def test_agreement_search_predicts_good_and_simulates_quality() -> None:
    texts = (("A", "B", "A", "C"), ("A", "B", "B", "C"), ("A", "A", "A", "A"))
    correct = np.array([[0.9, 0.8, 1.0], [0.2, 0.3, 1.0], [0.7, 0.1, 1.0], [0.0, 0.4, 1.0]] * 3)
    answers = AnswerSet(("a", "b", "c"), tuple(t * 3 for t in texts), correct, np.ones((12, 3)))
    agree = matrices(answers, AnswerKind.CHOICE)
    learned = learn(answers, agree, Plan((0, 1), None, 2), AnswerKind.CHOICE)
    # the consensus of a and b is a's answer (weights: mean quality 0.45 against 0.40), and
    # the simulation keeps its graded quality, not a 0/1 label
    assert np.allclose(learned.correct[0], correct[:, 0])
    assert learned.models[0] is not None
