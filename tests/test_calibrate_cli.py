"""`cascade calibrate` and `cascade train-verifier` end to end on hand-made recorded data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom
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


def cheap_confidence(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The cheap tier's vote share computed from the file, not through the engine: the share
    of its 10 recorded samples equal to the first (its answer), and whether that is right."""
    records = json.loads(path.read_text())
    conf = np.array([r["results"].count(r["results"][0]) / 10 for r in records])
    return conf, np.array([r["results"][0] == r["answer"] for r in records])


def calibrate_json(policy: Path, data: Path, target: str, *extra: str) -> dict:
    result = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data),
                                 "--target", target, "--json", "--in-place", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("target", ["quality=0.95", "escalation=0.3", "risk=0.2,delta=0.2"])
def test_calibrate_writes_thresholds_and_keeps_comments(tmp_path: Path, target: str) -> None:
    data = tmp_path / "dates.json"
    write_mot(data)
    conf, right = cheap_confidence(data)
    policy = tmp_path / "dates.yaml"
    policy.write_text(POLICY.format(data=data))
    result = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data), "--target", target, "--in-place"])
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output and "thresholds cheap:" in result.output
    text = policy.read_text()
    assert "# calibrated by the test" in text and "# votes on its own samples" in text
    threshold = load_policy(policy).tiers[0].threshold
    assert isinstance(threshold, float)
    accepted = conf >= threshold
    match target.partition("=")[0]:
        case "quality":  # the cascade's accuracy, recomputed from the file, reaches 95 % of the best
            cascade_right = np.where(accepted, right, right)  # both tiers replay the same answers
            assert cascade_right.mean() >= 0.95 * right.mean()
            assert accepted.mean() > 0.3  # and it is not bought by never accepting
        case "escalation":  # 18 of 60; ties allow 9 (below 0.4) or 21 (0.4 too): the nearer
            assert (conf < threshold).sum() == 21
        case _:  # risk: the certificate holds for the written threshold: U(k, 60) <= 0.2
            k = int((accepted & ~right).sum())
            assert binom.cdf(k, conf.size, 0.2) <= 0.2 and accepted.mean() > 0.2
            assert "# false accepts <= 0.2 w.p. >= 0.8; accepts" in text


def test_calibrate_risk_reports_coverage_next_to_the_guarantee(tmp_path: Path) -> None:
    """--json and the YAML comment carry what the guarantee accepts, recomputed here from the
    file: the accept count, its false accepts, the interval, the perfect-estimator bound."""
    data = tmp_path / "dates.json"
    write_mot(data)
    conf, right = cheap_confidence(data)
    policy = tmp_path / "dates.yaml"
    policy.write_text(POLICY.format(data=data))
    out = calibrate_json(policy, data, "risk=0.2,delta=0.2")
    [risk] = out["risk"]
    t, n = risk["threshold"], conf.size
    assert out["thresholds"]["cheap"] == t and load_policy(policy).tiers[0].threshold == pytest.approx(t)
    assert risk["n"] == n and risk["accepted"] == int((conf >= t).sum())
    assert risk["false_accepts"] == int(((conf >= t) & ~right).sum())
    # the next looser threshold would not be certified (else the scan would have gone on)
    looser = conf[conf < t].max()
    assert binom.cdf(int(((conf >= looser) & ~right).sum()), n, 0.2) > 0.2
    low, high = risk["accept_interval"]  # two-sided 95 % Clopper–Pearson, by its definition
    assert binom.sf(risk["accepted"] - 1, n, low) == pytest.approx(0.025, rel=1e-6)
    assert binom.cdf(risk["accepted"], n, high) == pytest.approx(0.025, rel=1e-6)
    k_star = max(k for k in range(n) if binom.cdf(k, n, 0.2) <= 0.2)
    assert risk["max_false_accepts"] == k_star
    assert risk["best_accept_rate"] == pytest.approx((right.sum() + k_star) / n)
    assert risk["feasible"] and risk["warning"] is None and out["feasible"]
    comment = policy.read_text().split("threshold:")[1].splitlines()[0]
    assert f"accepts {risk['accept_rate']:.1%} [{low:.1%}, {high:.1%}] of 60" in comment


def test_calibrate_risk_that_accepts_nothing_warns_and_strict_exits_1(tmp_path: Path) -> None:
    """α = 0.02, δ = 0.05 on 60 examples: even zero false accepts has bound
    1 − 0.05^(1/60) = 0.049 > 0.02, so nothing can be certified; 149 examples would be needed
    (ln 0.05 / ln 0.98 = 148.3). The threshold is written as `never`, with a warning; with
    --strict the command exits 1 and leaves the file as it was."""
    data = tmp_path / "dates.json"
    write_mot(data)
    policy = tmp_path / "dates.yaml"
    policy.write_text(POLICY.format(data=data))
    before = policy.read_text()
    strict = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data),
                                 "--target", "risk=0.02,delta=0.05", "--strict"])
    said = " ".join(strict.output.split())  # rich wraps long lines
    assert strict.exit_code == 1 and policy.read_text() == before
    assert "--strict: the risk target is met only by accepting (almost) nothing" in said
    assert "60 labelled examples cannot certify any acceptance" in said and "at least 149 are needed" in said
    result = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data),
                                 "--target", "risk=0.02,delta=0.05", "--in-place"])
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and "warning:" in said and "accepting 0.0% of 60" in said
    assert "threshold: never # false accepts <= 0.02" in policy.read_text()
    assert load_policy(policy).tiers[0].threshold == "never"
    before = policy.read_text()
    printed = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data),
                                  "--target", "risk=0.02,delta=0.05", "--json"])
    assert printed.exit_code == 0 and policy.read_text() == before  # no --out: nothing written
    out = json.loads(printed.stdout)
    [risk] = out["risk"]
    assert not out["feasible"] and risk["threshold"] == "never" and risk["accepted"] == 0
    assert risk["max_false_accepts"] == -1 and risk["min_examples"] == 149


def test_calibrate_target_syntax_errors_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "dates.json"
    write_mot(data)
    policy = tmp_path / "dates.yaml"
    policy.write_text(POLICY.format(data=data))
    for target, message in (("risk=0.1,dleta=0.1", "only a risk target takes a second setting, delta=D"),
                            ("quality=0.9,delta=0.1", "only a risk target takes a second setting"),
                            ("risk=0.1,delta=2", "value out of range")):
        result = runner.invoke(app, ["calibrate", "--policy", str(policy), "--data", str(data),
                                     "--target", target])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and message in said, (target, result.output)


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
