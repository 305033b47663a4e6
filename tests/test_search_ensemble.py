"""`cascade search-ensemble` end to end on a hand-made RouterBench-format file: two cheap
models that agree when right, a middling one, and a dear one that is always right."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import anyio
from typer.testing import CliRunner

from cascade import Cascade, load_policy
from cascade.cli import app

runner = CliRunner()
MODELS = ("cheap-a", "cheap-b", "mid", "dear")
COST = {"cheap-a": 0.001, "cheap-b": 0.002, "mid": 0.01, "dear": 0.1}


def write_data(path: Path, n: int = 120, seed: int = 0) -> list[dict[str, str]]:
    """Each cheap model is right 75 % of the time; when both are wrong they mostly disagree."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gold = rng.choice("ABCD")
        wrong = [c for c in "ABCD" if c != gold]
        answers = {}
        for model, p in (("cheap-a", 0.75), ("cheap-b", 0.75), ("mid", 0.8)):
            answers[model] = gold if rng.random() < p else rng.choice(wrong)
        answers["dear"] = gold
        row = {"": str(i), "sample_id": f"q.{i}", "prompt": repr([f"Question {i}: pick one.\nAnswer:"]),
               "eval_name": "toy"}
        for m in MODELS:
            row[m] = "1.0" if answers[m] == gold else "0.0"
        for m in MODELS:
            row[f"{m}|model_response"] = repr([answers[m]])
        for m in MODELS:
            row[f"{m}|total_cost"] = str(COST[m])
        row["oracle_model_to_route_to"] = "dear"
        rows.append(row)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_policy(path: Path, data: Path) -> None:
    tiers = "\n".join(f"  - {{name: {m}, model: {m}, provider: {{kind: replay, data: '{data}'}}}}"
                      for m in MODELS)
    path.write_text(f"# candidates\nfeature: toy\ntiers:\n{tiers}\n")


def test_search_writes_a_working_ensemble_policy(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    rows = write_data(data)
    write_policy(tmp_path / "candidates.yaml", data)
    out = tmp_path / "chosen" / "toy.yaml"
    result = runner.invoke(app, ["search-ensemble", "--policy", str(tmp_path / "candidates.yaml"),
                                 "--data", str(data), "--answer", "choice", "--target", "quality=0.95",
                                 "--out", str(out), "--no-middle", "--size", "2"])
    assert result.exit_code == 0, result.output
    # the report names the chosen set with its expected quality and cost on the data
    chosen = next(line for line in result.output.splitlines() if line.startswith("chosen: "))
    assert "cheap-a + cheap-b → dear" in chosen and "expected accuracy 0.9" in chosen
    assert "% of dear)" in chosen and "per query" in chosen and "% of its cost)" in chosen
    policy = load_policy(out)
    first = policy.tiers[0]
    assert first.model_names == ("cheap-a", "cheap-b") and first.estimator is not None
    assert (out.parent / "toy.agreement" / "ensemble" / "manifest.json").is_file()
    assert policy.tiers[-1].model == "dear"

    async def replay() -> list[tuple[int, float]]:
        async with Cascade.from_yaml(out) as engine:
            return [((r := await engine.run("x", metadata={"replay_row": str(i + 1)})).tier, r.cost)
                    for i in range(len(rows))]

    outcomes = anyio.run(replay)
    agree = [row["cheap-a|model_response"] == row["cheap-b|model_response"] for row in rows]
    # disagreement always escalates (and pays for both cheap models and the dear one)
    for (tier, cost), same in zip(outcomes, agree):
        if not same:
            assert tier == 1 and abs(cost - 0.103) < 1e-9
    accepted_cheap = [t == 0 for t, _ in outcomes]
    assert any(accepted_cheap) and sum(accepted_cheap) <= sum(agree)


def test_search_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    write_data(data, n=40)
    write_policy(tmp_path / "candidates.yaml", data)
    bad_target = runner.invoke(app, ["search-ensemble", "--policy", str(tmp_path / "candidates.yaml"),
                                     "--data", str(data), "--answer", "choice", "--target", "speed=2"])
    assert bad_target.exit_code == 2 and "quality=Q or cost=C" in bad_target.output
    two = tmp_path / "two.yaml"
    two.write_text("tiers:\n" + "\n".join(
        f"  - {{name: {m}, model: {m}, provider: {{kind: replay, data: '{data}'}}}}" for m in MODELS[:2]) + "\n")
    few = runner.invoke(app, ["search-ensemble", "--policy", str(two), "--data", str(data),
                              "--answer", "choice", "--target", "quality=0.9"])
    assert few.exit_code == 2 and "at least three one-model tiers" in few.output
    unreachable = runner.invoke(app, ["search-ensemble", "--policy", str(tmp_path / "candidates.yaml"),
                                      "--data", str(data), "--answer", "choice", "--target", "quality=1.5"])
    assert unreachable.exit_code == 1 and "no plan reaches" in unreachable.output
