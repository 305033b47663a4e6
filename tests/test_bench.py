"""The replay benchmark: the real engine over a hand-made RouterBench-format file, the
`cascade bench` command, and a smoke run on the recorded data (skipped without it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.bench._bench import EstimatorMethod, run_suite
from cascade.bench._cli import csv_suite
from cascade.bench._metrics import aiq
from cascade.bench._replay import Side, Suite
from cascade.bench._report import markdown
from cascade.cli import app
from verifiers import Capability, Estimate, EstimateContext

pytestmark = pytest.mark.anyio
MODELS = ("cheap", "mid", "dear")
COST = {"cheap": 0.001, "mid": 0.01, "dear": 0.1}


def write_fixture(path: Path, rows: int = 40) -> None:
    """Row i: the cheap model is right and says so ('sure') on even rows, wrong and unsure on
    odd ones; mid is right on rows divisible by 3; dear is always right."""
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["", "sample_id", "prompt", "eval_name", *MODELS,
                      *(f"{m}|model_response" for m in MODELS), *(f"{m}|total_cost" for m in MODELS),
                      "oracle_model_to_route_to"])
        for i in range(rows):
            cheap_ok, mid_ok = i % 2 == 0, i % 3 == 0
            answers = ["['sure: 4']" if cheap_ok else "['maybe: 5']", "['4']" if mid_ok else "['6']", "['4']"]
            out.writerow([i, f"s{i}", f"['Question {i}: what is 2+2?']", "toy",
                          int(cheap_ok), int(mid_ok), 1, *answers, *COST.values(), "cheap"])


class SaysSure:
    name = "says-sure"
    requires: frozenset[Capability] = frozenset()

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        return Estimate(1.0 if ctx.candidate.text.startswith("sure") else 0.0)


async def build_says_sure(suite: Suite, train: Side, test: Side):
    both = {tier.name: SaysSure() for tier in train.tiers}
    return both, both


async def test_bench_runs_the_engine_and_finds_the_hand_computed_cascade(tmp_path: Path) -> None:
    data = tmp_path / "toy.csv"
    write_fixture(data)
    suite = csv_suite(data, None, tmp_path)
    report = await run_suite(suite, tmp_path, [EstimatorMethod("says-sure", build_says_sure, (2,))],
                             bootstrap_rounds=20)
    n = report.queries
    assert n == 20  # halves of 40 rows
    single = {name: row["points"][0] for name, row in report.metrics.items() if row["kind"] == "single"}
    assert single["dear"] == [pytest.approx(n * COST["dear"]), 1.0]
    cascade = report.metrics["cascade: says-sure"]
    assert cascade["settings"][0]["chain"] == ["cheap", "dear"]
    # cheap on every query, dear on the odd-numbered (unsure) ones: all right
    best = max(cascade["points"], key=lambda p: (p[1], -p[0]))
    unsure = round((best[0] - n * COST["cheap"]) / COST["dear"])
    assert best[1] == 1.0 and 0 < unsure < n
    assert best[0] == pytest.approx(n * COST["cheap"] + unsure * COST["dear"])
    assert cascade["aiq"] > report.metrics["random"]["aiq"]
    assert cascade["aiq_ci95"][0] <= cascade["aiq"] <= cascade["aiq_ci95"][1]
    escalation = [s["escalation"][0] for s in cascade["settings"] if s["thresholds"][0] == 1.0]
    assert escalation and escalation[0] == pytest.approx(unsure / n)
    assert report.metrics["oracle"]["points"][0][1] == 1.0


@pytest.mark.models  # loads MiniLM or SmolLM2 (found by scripts/check_markers.sh)
def test_cascade_bench_cli_writes_table_json_and_plot(tmp_path: Path) -> None:
    data = tmp_path / "toy.csv"
    write_fixture(data)
    result = CliRunner().invoke(app, ["bench", "--csv", str(data), "--out", str(tmp_path / "out"),
                                      "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(payload["suites"]["toy"]["methods"]) >= {"cheap", "mid", "dear", "random", "oracle"}
    assert (tmp_path / "out" / "toy.png").stat().st_size > 10_000
    assert "| random |" in (tmp_path / "out" / "bench.md").read_text()


def test_cascade_bench_bad_input_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text("sample_id,prompt,m|model_response,m|total_cost\ns,p,a,zero\n")
    result = CliRunner().invoke(app, ["bench", "--csv", str(broken), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "missing column 'm'" in result.output
    result = CliRunner().invoke(app, ["bench", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no suite 'nope'" in result.output


@pytest.mark.data
def test_cascade_bench_smoke_on_the_recorded_data_matches_the_baselines(
        shared_data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "arc", "gsm8k", "--data", str(shared_data),
                                      "--out", str(tmp_path), "--bootstrap", "0", "--method", "none"])
    assert result.exit_code == 0, result.output
    suites = json.loads((tmp_path / "bench.json").read_text())["suites"]
    arc = suites["arc"]["methods"]
    # ../shared/BASELINES.md: random AIQ 0.9127, oracle 0.989 at $0.0943, gpt-4 0.957 at $2.1855
    assert suites["arc"]["queries"] == 437
    assert arc["random"]["aiq"] == pytest.approx(0.9127, abs=5e-4)
    cost, accuracy = arc["oracle"]["points"][0]
    assert (accuracy, cost) == (pytest.approx(0.989, abs=1e-3), pytest.approx(0.0943, abs=1e-4))
    assert arc["random"]["cost_to_99"] == pytest.approx(0.774, abs=2e-3)
    assert aiq(arc["gpt-4-1106-preview"]["points"], suites["arc"]["c_max"]) < 0.1
    gsm = suites["gsm8k"]["methods"]  # token-counted costs: within 0.01 AIQ of the published 0.7482
    assert gsm["random"]["aiq"] == pytest.approx(0.7482, abs=0.01)


def test_threshold_grids_start_at_always_accept() -> None:
    """The lowest setting accepts everything, also a test confidence below every train one
    (a 'train minimum' threshold would escalate it)."""
    import math

    import numpy as np

    from cascade.bench._sweep import threshold_grid
    from verifiers._agreement_search import _grid

    train = np.array([0.3, 0.3, 0.5, 0.7, 0.9])
    for grid in (threshold_grid(train, 5), _grid(train, 3), _grid(train, 12)):
        assert grid[0] == 0.0 and grid[-1] == math.inf
        assert 0.3 not in grid and 0.9 in grid  # the minimum is replaced, the rest kept
        assert grid == sorted(grid)
        assert 0.1 >= grid[0]  # a test confidence of 0.1 is accepted at the lowest setting
    assert threshold_grid(np.zeros(4), 5) == [0.0, math.inf]


async def test_rules_router_finds_the_length_rule_on_train(tmp_path: Path) -> None:
    """Long prompts (odd rows) are the ones the cheap model gets wrong: the length rule chosen
    on train sends them to the dear model, the rest to the cheap one, and is right on all."""
    data = tmp_path / "toy.csv"
    write_fixture(data)
    rows = list(csv.reader(data.open()))
    for i, row in enumerate(rows[1:]):
        if i % 2:
            row[2] = f"['Question {i}: what is 2+2? {'Think it over carefully. ' * 20}']"
    with data.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    report = await run_suite(csv_suite(data, None, tmp_path), tmp_path, [], bootstrap_rounds=10,
                             routers=["rules"])
    curve = report.metrics["routing only: rules (length)"]
    assert curve["kind"] == "router"
    n = report.queries
    best = max(zip(curve["points"], curve["settings"]), key=lambda ps: (ps[0][1], -ps[0][0]))
    (cost, accuracy), setting = best
    assert accuracy == 1.0 and (setting["short"], setting["long"]) == ("cheap", "dear")
    assert 40 < setting["min_chars"] < 500
    long = round((cost - n * COST["cheap"]) / (COST["dear"] - COST["cheap"]))
    assert 0 < long < n and cost == pytest.approx((n - long) * COST["cheap"] + long * COST["dear"])
    assert setting["escalation"] == [0.0, 0.0]  # routed, never escalated
    assert curve["aiq"] > report.metrics["random"]["aiq"]


def test_causal_grade_maps_are_monotone_and_priced_on_train() -> None:
    import numpy as np

    from cascade.bench._causal import LEVELS, options

    grades = np.array([1, 2, 5, 5, 0])  # 0: unparseable, goes to the default
    labels = np.array([[1, 1], [1, 1], [0, 1], [0, 1], [0, 1]], dtype=float)
    cost = np.array([[1.0, 10.0]] * 5)
    found = options(grades, labels, cost, 1, ("cheap", "dear"))
    assert len(found) == LEVELS + 1  # non-decreasing maps over 2 tiers
    assert all(list(s.thresholds) == sorted(s.thresholds) for s in found)
    best = max(found, key=lambda s: (s.train_accuracy, -s.train_cost))
    assert best.chain == ("cheap",) * 4 + ("dear",)  # grades 1-4 cheap, 5 dear
    assert (best.train_cost, best.train_accuracy) == (1.0 + 1.0 + 10 + 10 + 10, 1.0)


@pytest.mark.models  # loads MiniLM or SmolLM2 (found by scripts/check_markers.sh)
async def test_causal_router_on_the_bench_grades_once_and_replays(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The real SmolLM2 grader grades each toy query once (cached); every setting is then
    measured through the engine's causal-LLM router on the recorded replies."""
    import cascade.bench._causal as causal

    monkeypatch.setattr(causal, "CACHE", tmp_path / "cache")
    data = tmp_path / "toy.csv"
    write_fixture(data, rows=16)
    report = await run_suite(csv_suite(data, None, tmp_path), tmp_path, [], bootstrap_rounds=5,
                             routers=["causal_llm"])
    curve = report.metrics["routing only: causal_llm (SmolLM2-135M)"]
    cached = json.loads((tmp_path / "cache" / "grades-toy.json").read_text())
    assert len(cached) == 16 and all(isinstance(v, str) for v in cached.values())
    assert curve["points"] and all(0 < c and 0 <= a <= 1 for c, a in curve["points"])
    assert any(n.startswith("causal_llm: SmolLM2-135M grades") for n in report.notes)
    levels = curve["settings"][0]["levels"]
    assert len(levels) == causal.LEVELS and set(levels) <= {"cheap", "mid", "dear"}


@pytest.mark.models  # loads MiniLM or SmolLM2 (found by scripts/check_markers.sh)
async def test_router_curves_on_the_bench_cover_routing_only_and_router_plus_cascade(
        tmp_path: Path) -> None:
    """kNN on MiniLM embeddings of the toy prompts: routing only over every tier, and router +
    cascade over the says-sure cascade's chain, both chosen on train and run on test."""
    data = tmp_path / "toy.csv"
    write_fixture(data)
    report = await run_suite(csv_suite(data, None, tmp_path), tmp_path,
                             [EstimatorMethod("says-sure", build_says_sure, (2,))],
                             bootstrap_rounds=5, routers=["knn"])
    routed, both = report.metrics["routing only: knn"], report.metrics["router + cascade: knn + says-sure"]
    assert routed["kind"] == "router" and both["kind"] == "router+cascade"
    assert all(s["cost_weight"] >= 0 for s in routed["settings"])
    # the combined search can always fall back to the cascade, which is right on every query
    assert max(a for _, a in both["points"]) == 1.0
    assert both["aiq"] >= report.metrics["cascade: says-sure"]["aiq"] - 0.05
    margin = both["aiq_margin"]  # paired against the better of its two parts
    assert margin["rivals"] == ["routing only: knn", "cascade: says-sure"]
    low, high = margin["ci95"]
    assert low <= high and 0.0 <= margin["wins"] <= 1.0
    assert "AIQ − max(parts)" in markdown([report])
