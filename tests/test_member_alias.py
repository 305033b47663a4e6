"""Member aliases: one model with two prompts (MoT's chain-of-thought and program-of-thought
answers of gpt-3.5) is two ensemble members, told apart by `name:` in agreement and evidence."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cascade import Cascade, Decision, PolicyError
from cascade.policy import parse_policy

pytestmark = pytest.mark.anyio

# row: (CoT answer, PoT answer, dear answer); CoT and PoT agree on rows 1 and 3
ROWS = [("A", "A", "A"), ("B", "C", "C"), ("D", "D", "B"), ("A", "B", "B")]


def _write(path: Path, model: str, column: int) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["", "sample_id", "prompt", "eval_name", model, f"{model}|model_response",
                      f"{model}|total_cost"])
        for i, row in enumerate(ROWS):
            out.writerow([i, f"s{i}", f"['Question {i}?']", "toy", 1, f"['{row[column]}']", 0.01])


def _policy(tmp_path: Path, names: tuple[str | None, str | None], weights: str = "{}") -> str:
    for file, model, column in (("cot.csv", "gpt-3.5-turbo", 0), ("pot.csv", "gpt-3.5-turbo", 1),
                                ("dear.csv", "gpt-4", 2)):
        _write(tmp_path / file, model, column)
    members = []
    for name, file in zip(names, ("cot.csv", "pot.csv")):
        alias = f"name: {name}, " if name else ""
        members.append(f"{{model: gpt-3.5-turbo, {alias}provider: {{kind: replay, data: '{tmp_path / file}'}}}}")
    return f"""
tiers:
  - name: mot
    models: [{', '.join(members)}]
    provider: {{kind: replay, data: '{tmp_path / "cot.csv"}'}}
    estimator: {{kind: agreement, answer: choice, weights: {weights}}}
    threshold: 0.9
  - name: dear
    model: gpt-4
    provider: {{kind: replay, data: '{tmp_path / "dear.csv"}'}}
"""


async def test_one_model_with_two_prompts_is_an_ensemble_through_the_engine(tmp_path: Path) -> None:
    policy = parse_policy(_policy(tmp_path, ("cot", "pot"), "{cot: 2.0, pot: 1.0}"))
    async with Cascade.from_policy(policy) as engine:
        results = [await engine.run("x", metadata={"replay_row": str(i + 1)}) for i in range(len(ROWS))]
    decisions = [r.attempts[0].decision for r in results]
    assert decisions == [Decision.ACCEPT, Decision.ESCALATE, Decision.ACCEPT, Decision.ESCALATE]
    assert [r.answer for r in results] == ["A", "C", "D", "B"]
    first = results[1].attempts[0]
    assert {m.name for m in first.members} == {"cot", "pot"}
    assert {m.model for m in first.members} == {"gpt-3.5-turbo"}
    # on disagreement the consensus follows the heavier alias: CoT's "B" is the tier's answer
    assert [m.answer for m in first.members if m.chosen] == ["B"]
    assert first.model == "cot" and first.members[0].to_dict()["name"] in ("cot", "pot")


def test_the_same_model_twice_needs_names(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="lists a member twice"):
        parse_policy(_policy(tmp_path, (None, None)))
    with pytest.raises(PolicyError, match="not a slug"):
        parse_policy(_policy(tmp_path, ("CoT", "pot")))


async def test_the_bench_agreement_cascade_pairs_two_prompts_of_one_model(tmp_path: Path) -> None:
    """As MoT DATE's CoT + PoT: two tiers of one model; the plan search pairs them as an
    ensemble told apart by tier name, and the plan runs through the engine on test."""
    from cascade.bench._bench import run_suite
    from cascade.bench._methods import REGISTRY
    from cascade.bench._replay import SplitRule, Suite
    from verifiers import AnswerKind

    rows = 60
    columns = {"cot.csv": [], "pot.csv": [], "dear.csv": []}  # (answer, right) per row
    for i in range(rows):
        agree = i % 3 != 0  # when CoT and PoT agree they are right; otherwise CoT is wrong
        columns["cot.csv"].append(("A", 1) if agree else ("B", 0))
        columns["pot.csv"].append(("A", 1) if agree else ("A" if i % 2 else "C", i % 2))
        columns["dear.csv"].append(("A", 1))
    for file, model in (("cot.csv", "gpt-3.5-turbo"), ("pot.csv", "gpt-3.5-turbo"), ("dear.csv", "gpt-4")):
        with (tmp_path / file).open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["", "sample_id", "prompt", "eval_name", model, f"{model}|model_response",
                          f"{model}|total_cost"])
            for i, (answer, right) in enumerate(columns[file]):
                cost = 0.1 if model == "gpt-4" else 0.001
                out.writerow([i, f"s{i}", f"['Question {i}?']", "toy", right, f"['{answer}']", cost])
    policy = tmp_path / "mot.yaml"
    policy.write_text("tiers:\n" + "".join(
        f"  - {{name: {name}, model: {model}, provider: {{kind: replay, data: '{tmp_path / file}'}}}}\n"
        for name, model, file in (("cot", "gpt-3.5-turbo", "cot.csv"), ("pot", "gpt-3.5-turbo", "pot.csv"),
                                  ("dear", "gpt-4", "dear.csv"))))
    suite = Suite("mot", policy, SplitRule.HALVES, answer=AnswerKind.CHOICE)
    report = await run_suite(suite, tmp_path, [REGISTRY["agreement"]], bootstrap_rounds=0)
    curve = report.metrics["cascade: agreement"]
    assert "agreement" in report.ran
    assert any(s.get("ensemble") == ["cot", "pot"] for s in curve["settings"]), curve["settings"]
    assert any("member aliases" in n for n in report.notes)
    best = max(curve["points"], key=lambda p: (p[1], -p[0]))
    assert best[1] == 1.0 and best[0] < report.metrics["dear"]["points"][0][0]  # right for less
