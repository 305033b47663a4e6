"""`cascade calibrate` and `cascade train-verifier` end to end on hand-made recorded data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_bench import write_fixture
from typer.testing import CliRunner

from cascade import load_policy
from cascade.cli import app
from verifiers import load_verifier

runner = CliRunner()


def write_mot(path: Path, n: int = 60, seed: int = 0) -> None:
    """Questions whose 10 samples agree strongly when the first answer is right."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        gold = f"{i:02d}/01/2020"
        right = rng.random() < 0.6
        first = gold if right else f"{i:02d}/02/2020"
        others = [first if rng.random() < (0.9 if right else 0.4) else f"{i:02d}/0{rng.randint(3, 9)}/2020"
                  for _ in range(9)]
        samples = [first, *others]
        records.append({"question": f"Q{i}: what date?", "answer": gold,
                        "generated": [f"A: {s}" for s in samples], "results": samples})
    path.write_text(json.dumps(records))


POLICY = """# calibrated by the test
feature: dates
tiers:
  - name: cheap   # votes on its own samples
    model: gpt-3.5
    provider: {{kind: replay, data: '{data}'}}
    price: {{input_per_1m: 1, output_per_1m: 1}}
    estimator: {{kind: vote, samples: 10, answer: exact, early_stop: false}}
    threshold: 0.5
  - name: dear
    model: gpt-4
    provider: {{kind: replay, data: '{data}', vote: 5}}
    price: {{input_per_1m: 100, output_per_1m: 100}}
"""


@pytest.mark.parametrize("target", ["quality=0.95", "escalation=0.3", "risk=0.2,delta=0.2"])
def test_calibrate_writes_thresholds_and_keeps_comments(tmp_path: Path, target: str) -> None:
    data = tmp_path / "dates.json"
    write_mot(data)
    policy = tmp_path / "dates.yaml"
    policy.write_text(POLICY.format(data=data))
    result = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data), "--target", target, "--in-place"])
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output and "thresholds cheap:" in result.output
    text = policy.read_text()
    assert "# calibrated by the test" in text and "# votes on its own samples" in text
    threshold = load_policy(policy).tiers[0].threshold
    assert threshold is not None and (threshold != 0.5 or target.startswith("risk"))


def test_calibrate_bad_target_and_missing_estimator_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "dates.json"
    write_mot(data)
    policy = tmp_path / "dates.yaml"
    policy.write_text(POLICY.format(data=data))
    result = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data), "--target", "speed=9"])
    assert result.exit_code == 2 and "expected quality=Q" in result.output
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"tiers:\n  - {{name: a, model: m, provider: {{kind: replay, data: '{data}'}}, "
                     "price: {input_per_1m: 1}}\n  - {name: b, model: m, provider: {kind: replay, "
                     f"data: '{data}'}}, price: {{input_per_1m: 1}}}}\n")
    result = runner.invoke(app, ["calibrate", "--policy", str(plain), "--data", str(data), "--target", "quality=0.9"])
    assert result.exit_code == 2 and "have no estimator" in result.output


@pytest.mark.models
def test_train_verifier_writes_a_loadable_artifact(tmp_path: Path) -> None:
    data = tmp_path / "toy.csv"
    write_fixture(data)
    out = tmp_path / "artifact"
    result = runner.invoke(app, ["train-verifier", "--data", str(data), "--model", "cheap", "--out", str(out)])
    assert result.exit_code == 0, result.output
    verifier = load_verifier(out)
    sure, unsure = verifier.predict(["Question 1: what is 2+2?"] * 2, ["sure: 4", "maybe: 5"])
    assert sure > unsure
    result = runner.invoke(app, ["train-verifier", "--data", str(data), "--model", "dear", "--out", str(out)])
    assert result.exit_code == 2 and "no negative labels" in result.output
    result = runner.invoke(app, ["train-verifier", "--data", str(data), "--model", "nope", "--out", str(out)])
    assert result.exit_code == 2 and "'nope' is not in the data" in result.output
