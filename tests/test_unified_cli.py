"""``cascade train-router --kind unified`` and ``cascade calibrate`` on a ``routing.mode:
unified`` policy: the typed errors for every bad input, λ chosen for quality / cost /
escalation targets by hand, the write-back, and end to end on hand-made recorded CSVs —
train-router → calibrate → ``Cascade.from_policy`` on replay tiers meets the target with the
cost and quality the calibration printed."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import anyio
import numpy as np
import pytest
from tokenizers import Tokenizer
from typer.testing import CliRunner

from cascade import Cascade
from cascade.cli import app
from cascade.errors import ConfigError, PolicyError, RouterArtifactError
from cascade.policy import load_policy
from cascade.policy._writeback import with_cost_weight
from cascade.providers import load_table
from cascade.routing import Replayed, UnifiedData, correctness_data
from cascade.tuning import (
    Target,
    TargetKind,
    UnifiedFitError,
    UnifiedTargetError,
    calibrate,
    choose_cost_weight,
    train_unified,
)
from cascade.tuning._unified_calibrate import refine
from cascade.tuning._unified_data import group_ids
from cascade.types import Decision
from verifiers import AnswerKind, StaticEncoder, distil_static, shared_encoder
from verifiers._normalise import normalise

runner = CliRunner()
MODELS = ("cheap-model", "mid-model", "dear-model")
COST = (0.0001, 0.001, 0.01)
# P(right answer) per topic and model: arithmetic is easy for all, history needs mid, science dear
RIGHT = {"math": (0.95, 0.97, 0.98), "history": (0.2, 0.9, 0.95), "science": (0.1, 0.4, 0.9)}
PEOPLE = ("Caesar", "Napoleon", "Cleopatra", "Charlemagne", "Lincoln", "Victoria", "Ashoka", "Hannibal")
ELEMENTS = ("hydrogen", "helium", "lithium", "carbon", "nitrogen", "oxygen", "neon", "sodium", "iron")


def write_csv(path: Path, n: int, seed: int, *, responses: bool = True, routellm: bool = False) -> Path:
    """A RouterBench-format file (``routellm``: RouteLLM's, without costs): three topics in
    turn; a wrong answer is often shared by the models that miss (as in real data)."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        if routellm:
            out.writerow(["prompt", *MODELS, *(m + "_response" for m in MODELS)])
        else:
            out.writerow(["", "sample_id", "prompt", "eval_name", *MODELS,
                          *(m + "|model_response" for m in MODELS), *(m + "|total_cost" for m in MODELS)])
        for i in range(n):
            topic = ("math", "history", "science")[i % 3]
            if topic == "math":
                a, b = rng.randint(2, 99), rng.randint(2, 99)
                prompt, gold = f"Question: What is {a} plus {b}?\nAnswer:", str(a + b)
            elif topic == "history":
                prompt = f"Question: In which century did {rng.choice(PEOPLE)} sign treaty number {i}?\nAnswer:"
                gold = f"c{rng.randint(1, 19)}"
            else:
                prompt = f"Question: What is the isotope mass of {rng.choice(ELEMENTS)} sample {i}?\nAnswer:"
                gold = f"m{rng.randint(1, 300)}"
            shared_wrong = f"w{rng.randint(1000, 9999)}"
            right, answers = [], []
            for j in range(3):
                ok = rng.random() < RIGHT[topic][j]
                right.append(1.0 if ok else 0.0)
                answers.append(gold if ok else shared_wrong if rng.random() < 0.6 else f"x{rng.randint(1000, 9999)}")
            if routellm:
                out.writerow([prompt, *(bool(r) for r in right), *answers])
                continue
            cells = [repr([a]) if responses else "[]" for a in answers]
            out.writerow([i, f"{topic}.{i}", repr([prompt]), topic, *right, *cells, *COST])
    return path


def write_policy(folder: Path, data: Path, *, mode: str = "unified", answer: str = "exact",
                 models: tuple[str, ...] = MODELS, name: str = "policy.yaml", prices: bool = False) -> Path:
    """Three replay tiers; ``prices``: USD 1, 10, 100 per 1M input tokens (nothing for output)."""
    tiers = "\n".join(f"  - {{name: {t}, model: {m}, provider: {{kind: replay, data: {data}}}"
                      + (f", price: {{input_per_1m: {10 ** j}}}}}" if prices else "}")
                      for j, (t, m) in enumerate(zip(("cheap", "mid", "dear"), models)))
    unified = "" if mode != "unified" else (
        "  unified:\n    artifact: routers/unified.json  # the fitted decision\n"
        f"    cost_weight: 0.05\n    answer: {answer}\n")
    path = folder / name
    path.write_text(f"feature: unified\ntiers:\n{tiers}\nrouting:\n  mode: {mode}\n"
                    f"  router: {{kind: knn, artifact: routers/knn, cold_start: false}}\n" + unified)
    return path


def _cli(*args: str | Path) -> tuple[int, str]:
    """Exit code and the console output with line wraps undone."""
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def _json(*args: str | Path) -> dict[str, object]:
    """A ``--json`` run's report (stdout only: notes go to stderr)."""
    result = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# --- typed errors (no model is loaded: they come before any embedding) -----------------------


def test_train_refuses_bad_inputs_naming_what_is_wrong(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", 30, 1)
    both = write_policy(tmp_path, data, mode="both", name="both.yaml")
    code, text = _cli("train-router", "--kind", "unified", "--policy", both, "--data", data)
    assert code == 2 and "not in unified mode (routing.mode is both)" in text
    stranger = write_policy(tmp_path, data, models=("cheap-model", "mid-model", "gpt-9"), name="s.yaml")
    code, text = _cli("train-router", "--kind", "unified", "--policy", stranger, "--data", data)
    assert code == 2 and "model 'gpt-9' is not in the data (models: cheap-model, mid-model, dear-model)" in text
    silent = write_csv(tmp_path / "silent.csv", 30, 1, responses=False)
    code, text = _cli("train-router", "--kind", "unified", "--policy", write_policy(tmp_path, silent), "--data", silent)
    assert code == 2 and "no recorded responses for cheap-model, mid-model, dear-model" in text
    numbers = write_policy(tmp_path, data, answer="choice", name="n.yaml")
    code, text = _cli("train-router", "--kind", "unified", "--policy", numbers, "--data", data)
    assert code == 2 and "gives a 'choice' answer" in text and "cheap-model" in text
    few = write_csv(tmp_path / "few.csv", 9, 1)
    code, text = _cli("train-router", "--kind", "unified", "--policy", write_policy(tmp_path, few), "--data", few)
    assert code == 2 and "9 rows have a label for every tier's model" in text and "at least 10" in text
    code, text = _cli("train-router", "--kind", "unified", "--policy", write_policy(tmp_path, data),
                      "--data", data, "--folds", "1")
    assert code == 2 and "--folds must be at least 2" in text
    code, text = _cli("train-router", "--kind", "unified", "--data", data)
    assert code == 2 and "--kind unified needs --policy" in text
    code, text = _cli("train-router", "--kind", "unified", "--policy", both, "--data", data, "--k", "3")
    assert code == 2 and "--k: not for --kind unified" in text
    code, text = _cli("train-router", "--kind", "knn", "--policy", both, "--data", data, "--out", tmp_path / "r")
    assert code == 2 and "--policy goes with --kind unified" in text
    assert not (tmp_path / "routers").exists()  # nothing written by any of them


def test_calibrate_refuses_bad_targets_and_modes(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", 12, 1)
    assert Target.parse("cost=0.3").kind.value == "cost"
    with pytest.raises(ConfigError, match="value out of range"):
        Target.parse("cost=1.5")
    threshold_policy = load_policy(write_policy(tmp_path, data, mode="cascade", name="c.yaml"))
    with pytest.raises(ConfigError, match="a cost target calibrates λ of a `routing.mode: unified`"):
        anyio.run(calibrate, threshold_policy, data, Target.parse("cost=0.3"), tmp_path)
    with pytest.raises(ConfigError, match="in routing.mode unified: its tiers have no thresholds"):
        anyio.run(calibrate, load_policy(write_policy(tmp_path, data)), data, Target.parse("quality=0.9"), tmp_path)
    policy = write_policy(tmp_path, data)
    code, text = _cli("calibrate", "--policy", policy, "--data", data, "--target", "risk=0.1")
    assert code == 2 and "the unified decision has no accept threshold" in text
    code, text = _cli("calibrate", "--policy", policy, "--data", data, "--target", "quality=0.9", "--strict")
    assert code == 2 and "--strict is for risk targets" in text
    code, text = _cli("calibrate", "--policy", policy, "--data", data, "--target", "quality=0.9")
    assert code == 2 and "routers/knn and routers/unified.json not found" in text  # not fitted yet
    assert "cascade train-router --kind unified" in text
    with pytest.raises(UnifiedFitError, match="--folds must be at least 2"):
        anyio.run(lambda: train_unified(load_policy(policy), data, tmp_path, folds=0))


# --- the pure parts, by hand --------------------------------------------------------------


def _replayed(cost: list[float], quality: list[float], calls: list[int]) -> Replayed:
    reached = np.zeros((len(calls), 3), dtype=bool)
    for i, c in enumerate(calls):
        reached[i, :c] = True
    return Replayed(np.array(cost), np.array(quality), reached)


def test_lambda_for_each_target_by_hand() -> None:
    """Two queries; best tier quality 1.0 (dear), dearest mean cost 1.0. λ 0: both right,
    cost 1.1, both call two tiers; λ 0.1: 1 of 2 right... see each assertion."""
    data = UnifiedData(("a", "b", "c"), np.full((2, 3), 0.5), np.array([[0, 1, 1], [1, 0, 1.0]]),
                       np.array([[0.01, 0.1, 1.0]] * 2), np.zeros((2, 3), dtype=int))
    swept = [(0.0, _replayed([1.1, 1.1], [1, 1], [2, 2])),  # quality 1, cost 1.1, escalation 100 %
             (0.1, _replayed([0.1, 1.01], [1, 1], [1, 2])),  # quality 1, cost 0.555, escalation 50 %
             (1.0, _replayed([0.1, 0.01], [1, 1], [1, 1])),  # quality 1, cost 0.055, escalation 0 %
             (5.0, _replayed([0.01, 0.01], [0, 1], [1, 1]))]  # quality 0.5, cost 0.01
    assert choose_cost_weight(swept, data, Target.parse("quality=0.99")) == 1.0  # the largest λ reaching it
    assert choose_cost_weight(swept, data, Target.parse("quality=0.5")) == 5.0
    assert choose_cost_weight(swept, data, Target.parse("cost=0.6")) == 0.1  # the smallest within the cost
    assert choose_cost_weight(swept, data, Target.parse("cost=0.05")) == 5.0
    assert choose_cost_weight(swept, data, Target.parse("escalation=0.5")) == 0.1
    assert choose_cost_weight(swept, data, Target.parse("escalation=0.2")) == 1.0
    with pytest.raises(UnifiedTargetError, match=r"closest is λ=1 with quality 1\.0000 \(100\.0% of the best") as caught:
        choose_cost_weight(swept, data, Target.parse("quality=1.2"))
    assert caught.value.closest.cost_weight == 1.0
    with pytest.raises(UnifiedTargetError, match=r"closest is λ=5 with mean cost 0\.01 \(1\.0% of the dearest"):
        choose_cost_weight(swept, data, Target.parse("cost=0.001"))
    with pytest.raises(UnifiedFitError, match="no accept threshold"):
        choose_cost_weight(swept, data, Target.parse("risk=0.1"))
    grid = [0.0, 0.1, 1.0, 5.0]  # the λ tried next: towards the neighbour that misses the target
    assert refine(grid, 1.0, TargetKind.QUALITY) == pytest.approx(np.geomspace(1.0, 5.0, 10)[1:-1])
    assert refine(grid, 0.1, TargetKind.COST) == pytest.approx(np.linspace(0.0, 0.1, 10)[1:-1])
    assert refine(grid, 5.0, TargetKind.QUALITY) == [] and refine(grid, 0.0, TargetKind.ESCALATION) == []


def test_answer_groups_by_hand() -> None:
    key = lambda text: normalise(text, AnswerKind.NUMBER)
    groups = group_ids([["The answer is 12", "12.", None], ["x", "7", "seven"], ["3", "4", "3"]], key)
    assert groups.tolist() == [[0, 0, -1], [-1, 0, -1], [0, 1, 0]]
    assert group_ids([["a", "a"]], None).tolist() == [[-1, -1]]  # no answer kind: nothing agrees


def test_write_back_keeps_the_rest_of_the_policy(tmp_path: Path) -> None:
    text = write_policy(tmp_path, tmp_path / "d.csv").read_text()
    written = with_cost_weight(text, 0.123456789012, comment="target quality=0.99")
    assert re.search(r"\n    cost_weight: 0\.123456789012 +# target quality=0\.99\n", written)
    assert "artifact: routers/unified.json  # the fitted decision" in written
    assert re.sub(r"0\.123456789012 +# target quality=0\.99", "0.05", written) == text
    flow = text.replace("  unified:\n    artifact: routers/unified.json  # the fitted decision\n"
                        "    cost_weight: 0.05\n    answer: exact\n",
                        "  unified: {artifact: routers/unified.json, cost_weight: 0.05}\n")
    assert "unified: {artifact: routers/unified.json, cost_weight: 0.5}\n" in with_cost_weight(flow, 0.5)
    commented = with_cost_weight(flow, 0.5, comment="c")  # block style: no comment inside {...}
    assert re.search(r"\n  unified:\n    artifact: routers/unified.json\n    cost_weight: 0\.5 +# c\n", commented)
    with pytest.raises(PolicyError, match="routing.unified.*no unified section"):
        with_cost_weight(write_policy(tmp_path, tmp_path / "d.csv", mode="both").read_text(), 0.5)


# --- end to end: real router (static encoder distilled from MiniLM), real engine ---------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """train.csv, held-out test.csv, and a static encoder distilled over their tokens only."""
    folder = tmp_path_factory.mktemp("unified")
    train, test = write_csv(folder / "train.csv", 90, 1), write_csv(folder / "test.csv", 90, 2)
    tokenizer = Tokenizer.from_file(str(shared_encoder().path / "tokenizer.json"))
    texts = list(correctness_data(train).texts) + list(correctness_data(test).texts)
    tokens = sorted({i for t in texts for i in tokenizer.encode(t, add_special_tokens=False).ids})
    static: StaticEncoder = distil_static(tokens=tokens, dims=64)
    static.save(folder / "static")
    return train, test, folder / "static"


async def _serve(path: Path, data: Path) -> tuple[float, float, float]:
    """The written policy, loaded as users load it, on every row of ``data``: mean quality of
    the accepted answers, mean cost, mean attempts."""
    table = load_table(data)
    quality, cost, calls = [], [], []
    async with Cascade.from_policy(load_policy(path), base_dir=path.parent) as engine:
        for number, row in enumerate(table.rows, 1):
            result = await engine.run(row.prompt, metadata={"replay_row": str(number)})
            accepted = [a for a in result.attempts if a.decision is Decision.ACCEPT]
            assert len(accepted) == 1
            quality.append(accepted[0].label)
            cost.append(result.cost)
            calls.append(len(result.attempts))
    return float(np.mean(quality)), float(np.mean(cost)), float(np.mean(calls))


@pytest.mark.models
def test_train_calibrate_and_serve_end_to_end(tmp_path: Path, recorded: tuple[Path, Path, Path]) -> None:
    train, test, static = recorded
    policy = write_policy(tmp_path, test)  # the tiers serve the held-out file's rows
    code, text = _cli("train-router", "--kind", "unified", "--policy", policy, "--data", train,
                      "--encoder", "static", "--static-table", static)
    assert code == 0, text
    assert "trained on all the data and written to" in text and "priors cross-fitted over 5 folds" in text
    fitted = json.loads((tmp_path / "routers" / "unified.json").read_text())
    assert fitted["models"] == list(MODELS) and fitted["fitted_on"]["file"] == "train.csv"
    assert fitted["fitted_on"]["queries"] == 90 and (tmp_path / "routers" / "knn" / "manifest.json").exists()
    assert fitted["fitted_on"]["key"] == {"answer": "exact", "check_arithmetic": False}
    for change in ("    answer: exact\n    check_arithmetic: true\n", "    answer: number\n"):
        other = tmp_path / "other-key.yaml"
        other.write_text(policy.read_text().replace("    answer: exact\n", change))
        with pytest.raises(RouterArtifactError, match=r"fitted with answer exact, arithmetic check off, but "
                                                      r"routing\.unified says answer (exact|number), arithmetic check on"):
            Cascade.from_yaml(other)
    code, again = _cli("train-router", "--kind", "unified", "--policy", policy, "--data", train)
    assert code == 0 and "reused from" in again  # the router artifact exists now
    code, clash = _cli("train-router", "--kind", "unified", "--policy", policy, "--data", train, "--encoder", "minilm")
    assert code == 2 and "trained with the static encoder; --encoder minilm would not be used" in clash

    code, text = _cli("calibrate", "--policy", policy, "--data", train, "--target", "quality=0.9")
    assert code == 2 and "is the file routers/unified.json was fitted on" in text

    for target in ("quality=0.95", "cost=0.3", "escalation=0.1"):
        out = tmp_path / f"{target}.yaml"
        report = _json("calibrate", "--policy", policy, "--data", test, "--target", target, "--out", out)
        lam = report["cost_weight"]
        assert load_policy(out).routing.unified.cost_weight == lam  # type: ignore[union-attr]
        assert f"# target {target} on test.csv (90 queries)" in out.read_text()
        point = next(p for p in report["points"] if p["cost_weight"] == lam)
        quality, cost, calls = anyio.run(_serve, out, test)
        assert (quality, calls) == (pytest.approx(point["quality"]), pytest.approx(point["calls"]))
        assert cost == pytest.approx(point["cost"])  # the engine does what the calibration replayed
        best = max(t["quality"] for t in report["tiers"])
        dearest = max(t["cost"] for t in report["tiers"])
        kind, value = target.split("=")
        match kind:
            case "quality":
                assert quality >= float(value) * best - 1e-9
                assert all(p["quality"] < float(value) * best for p in report["points"] if p["cost_weight"] > lam)
            case "cost":
                assert cost <= float(value) * dearest + 1e-12
            case "escalation":
                assert point["escalation"] <= float(value) and calls <= 1 + float(value) + 1e-9
    lams = [_json("calibrate", "--policy", policy, "--data", test, "--target", f"quality={q}")["cost_weight"]
            for q in (0.8, 0.9, 0.95)]
    assert lams == sorted(lams, reverse=True)  # a higher quality target never gives a larger λ

    before = policy.read_text()
    code, text = _cli("calibrate", "--policy", policy, "--data", test, "--target", "quality=1.3", "--in-place")
    assert code == 1 and "no λ reaches 1.3 of the best tier's quality" in text and "closest is λ=" in text
    assert "nothing written" in text and policy.read_text() == before


@pytest.mark.models
def test_costs_come_from_the_tiers_prices_when_the_data_has_none(
        tmp_path: Path, recorded: tuple[Path, Path, Path]) -> None:
    """A RouteLLM-format file records no costs: the engine charges each tier's price for the
    recorded tokens. Input-only prices 1 : 10 : 100 on the same prompts give relative costs
    0.01 : 0.1 : 1 in the artifact; λ for a cost target is then chosen on those charges."""
    _, _, static = recorded
    train = write_csv(tmp_path / "train.csv", 60, 3, routellm=True)
    test = write_csv(tmp_path / "test.csv", 60, 4, routellm=True)
    policy = write_policy(tmp_path, test, prices=True)
    code, text = _cli("train-router", "--kind", "unified", "--policy", policy, "--data", train,
                      "--encoder", "static", "--static-table", static, "--folds", "3")
    assert code == 0, text
    assert "priors cross-fitted over 3 folds" in text
    fitted = json.loads((tmp_path / "routers" / "unified.json").read_text())
    assert fitted["cost"] == pytest.approx([0.01, 0.1, 1.0])
    report = _json("calibrate", "--policy", policy, "--data", test, "--target", "cost=0.3", "--in-place")
    dearest = max(t["cost"] for t in report["tiers"])
    assert dearest > 0 and [t["cost"] / dearest for t in report["tiers"]] == pytest.approx([0.01, 0.1, 1.0])
    chosen = next(p for p in report["points"] if p["cost_weight"] == report["cost_weight"])
    assert chosen["cost"] <= 0.3 * dearest
    quality, cost, _ = anyio.run(_serve, policy, test)
    assert (quality, cost) == (pytest.approx(chosen["quality"]), pytest.approx(chosen["cost"]))


def test_failed_calls_are_counted_and_reported_not_silent_zeros() -> None:
    """A tier whose call fails is recorded as quality 0 at the cost charged, and the failure
    shows up as a note naming the tier, the count and the error type."""
    from scripted import Flaky, Scripted

    from cascade import Tier
    from cascade.errors import BadRequestError
    from cascade.tuning._unified_data import record_answers

    good = Scripted("4", name="good")
    bad = Flaky("4", name="bad", script=[None, BadRequestError("scripted@bad", 400, "no"), None,
                                         BadRequestError("scripted@bad", 400, "no")])
    tiers = [Tier("good", "g", good, None, None), Tier("bad", "b", bad, None, None)]
    answers = anyio.run(record_answers, tiers, [("q1", 1), ("q2", 2), ("q3", 3), ("q4", 4)])
    assert answers.failed is not None
    assert answers.failed[:, 0].tolist() == [False] * 4
    assert answers.failed[:, 1].tolist() == [False, True, False, True]
    assert [t[1] for t in answers.texts] == ["4", None, "4", None]
    notes = answers.failure_notes(["good", "bad"])
    assert notes == ["tier bad: 2 of 4 calls failed (BadRequestError); counted as quality 0 at the cost charged"]
