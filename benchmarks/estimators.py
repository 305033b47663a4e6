"""Figures for the confidence estimators, on the recorded data.

    .venv/bin/python benchmarks/estimators.py [--data ../shared/data] [--quick] [--no-cross-encoder]

1. Self-consistency on MoT DATE gpt-3.5 (20 samples per question): AUROC of the vote share for
   "the majority answer is correct" and for "the first answer is correct"; samples used per
   question with early stopping (the estimator itself, fed the recorded samples) against fixed k
   at equal accuracy.
2. Trained verifiers (scikit-learn and cross-encoder) on RouterBench ARC / Winogrande / MBPP for
   the cheap models (train on ``*_train``, report on ``*_test``) and on RouteLLM GSM8K Mixtral
   (50/50 split, seed 0): test AUROC and ECE.
3. The risk target: over 200 random calibration/test splits, the share whose realised
   false-accept rate on the test part is ≤ α (must be ≥ 1 − δ).

Writes benchmarks/results/estimators.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import numpy as np

from cascade.providers import ReplayTable, load_table
from verifiers import (
    AnswerKind,
    CachedEncoder,
    Candidate,
    EstimateContext,
    Example,
    Sampled,
    SelfConsistencyEstimator,
    Usage,
    auroc,
    expected_calibration_error,
    majority_probability,  # noqa: F401  (documents the rule used)
    risk_threshold,
    train_cross_encoder,
    train_sklearn_verifier,
    vote_confidence,
)

OUT = Path(__file__).resolve().parent / "results"
CHEAP = ("mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "meta/llama-2-70b-chat")
SETS = {"arc": "arc_challenge", "winogrande": "winograde", "mbpp": "mbpp"}


def mot_vote(data: Path, k: int = 20) -> dict[str, object]:
    table = load_table(data / "mot_date" / "gpt35" / "date_cot1.json")
    records = [table.record(r, "m") for r in table.rows]
    share, majority_right, first_share, first_right = [], [], [], []
    for rec in records:
        conf, tally = vote_confidence(rec.samples[0], rec.samples[1:k], AnswerKind.EXACT)
        share.append(tally["majority_share"])
        top = max(set(rec.samples[:k]), key=rec.samples[:k].count)
        majority_right.append(rec.sample_correct[rec.samples.index(top)])
        first_share.append(conf)
        first_right.append(rec.sample_correct[0])
    full = [_accepts(rec, k) for rec in records]  # the decision with all k votes
    stop = anyio.run(_early_stopping, records, k, full)
    fixed = {j: float(np.mean([_accepts(r, j) == f for r, f in zip(records, full)])) for j in range(2, k + 1)}
    equal = min((j for j, agree in fixed.items() if agree >= stop["agreement"] - 1e-9), default=k)
    return {"questions": len(records), "auroc_majority": auroc(share, majority_right),
            "auroc_first": auroc(first_share, first_right), "early_stop": stop,
            "fixed_k_agreement": fixed, "fixed_k_for_equal_agreement": equal}


def _accepts(rec: object, j: int) -> bool:
    """The vote's decision with the first j votes: the first answer holds at least half."""
    samples = rec.samples[:j]  # type: ignore[attr-defined]
    return samples.count(samples[0]) * 2 >= j


async def _early_stopping(records: Sequence[object], k: int, full: Sequence[bool]) -> dict[str, float]:
    estimator = SelfConsistencyEstimator(k=k, kind=AnswerKind.EXACT, batch=2, min_samples=3)
    used, agree = [], []
    for rec, decision in zip(records, full):
        samples = list(rec.samples)  # type: ignore[attr-defined]
        cursor = 1

        async def sample(n: int, samples: list[str] = samples) -> Sampled:
            nonlocal cursor
            chunk = samples[cursor:cursor + n]
            cursor += len(chunk)
            return Sampled(tuple(Candidate(s) for s in chunk), Usage(1))

        estimate = await estimator.estimate(EstimateContext((), Candidate(samples[0]), "t", sample))
        used.append(int(estimate.details["samples_used"]))
        agree.append((estimate.confidence >= 0.5) == decision)
    return {"mean_samples": float(np.mean(used)), "agreement": float(np.mean(agree)),
            "max_samples": int(max(used))}


def examples(table: ReplayTable, model: str, rows: Sequence[int] | None = None) -> list[Example]:
    picked = table.rows if rows is None else [table.rows[i] for i in rows]
    return [Example(r.prompt, table.record(r, model).response, bool(table.record(r, model).correct))
            for r in picked if table.record(r, model).correct is not None]


ENCODER = CachedEncoder()  # prompts repeat across the models of a data set


def score(kind: str, train: list[Example], test: list[Example], epochs: int) -> dict[str, float]:
    start = time.perf_counter()
    if kind == "sklearn":
        verifier = train_sklearn_verifier(train, encoder=ENCODER)
    else:
        verifier = train_cross_encoder(train, epochs=epochs)
    trained = time.perf_counter() - start
    predicted = verifier.predict([e.query for e in test], [e.answer for e in test])
    labels = [e.correct for e in test]
    return {"auroc": auroc(predicted, labels), "ece": expected_calibration_error(predicted, labels),
            "train_s": trained, "train_n": len(train), "test_n": len(test),
            "test_accuracy": float(np.mean(labels))}


def verifiers_table(data: Path, cross: bool, epochs: int, quick: bool,
                    sets: Sequence[str] | None = None, kinds: Sequence[str] | None = None) -> list[dict[str, object]]:
    """sklearn verifiers for the cheap models; the cross-encoder for Mixtral on every set."""
    rows = []
    wanted = lambda name, kind: (sets is None or name in sets) and (kinds is None or kind in kinds)  # noqa: E731
    for name, stem in SETS.items():
        if sets is not None and name not in sets:
            continue
        train_t = load_table(data / "routerbench" / f"{stem}_train.csv")
        test_t = load_table(data / "routerbench" / f"{stem}_test.csv")
        for model in CHEAP[:1] if quick else CHEAP:
            for kind in ["sklearn"] + (["cross-encoder"] if cross and "mixtral" in model else []):
                if not wanted(name, kind):
                    continue
                result = score(kind, examples(train_t, model), examples(test_t, model), epochs)
                rows.append({"data": name, "model": model, "kind": kind, **result})
                print(rows[-1], flush=True)
    if sets is not None and "gsm8k" not in sets:
        return rows
    gsm = load_table(data / "routellm_gsm8k" / "gsm8k_responses.csv")
    order = np.random.RandomState(0).permutation(len(gsm.rows))
    half = len(order) // 2
    model = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    for kind in ["sklearn"] + (["cross-encoder"] if cross else []):
        if not wanted("gsm8k", kind):
            continue
        result = score(kind, examples(gsm, model, order[:half]), examples(gsm, model, order[half:]), epochs)
        rows.append({"data": "gsm8k", "model": model, "kind": kind, **result})
        print(rows[-1], flush=True)
    return rows


def risk_splits(conf: np.ndarray, correct: np.ndarray, alpha: float, delta: float,
                splits: int = 200) -> dict[str, float]:
    rng = np.random.default_rng(0)
    held, accepted = 0, []
    for _ in range(splits):
        order = rng.permutation(conf.size)
        cal, test = order[: conf.size // 2], order[conf.size // 2:]
        t = risk_threshold(conf[cal], correct[cal], alpha, delta, batch=test.size)
        held += (~correct[test] & (conf[test] >= t)).mean() <= alpha
        accepted.append((conf[test] >= t).mean())
    return {"alpha": alpha, "delta": delta, "share_held": held / splits,
            "mean_accepted": float(np.mean(accepted))}


def risk_table(data: Path) -> list[dict[str, object]]:
    table = load_table(data / "mot_date" / "gpt35" / "date_cot1.json")
    conf, correct = [], []
    for row in table.rows:
        rec = table.record(row, "m")
        conf.append(vote_confidence(rec.samples[0], rec.samples[1:], AnswerKind.EXACT)[0])
        correct.append(rec.sample_correct[0])
    c, y = np.array(conf), np.array(correct)
    return [{"data": "mot-date gpt-3.5 vote share (20)", **risk_splits(c, y, a, d)}
            for a, d in ((0.1, 0.1), (0.15, 0.1), (0.2, 0.1), (0.2, 0.05))]


def markdown(vote: dict[str, object], verifiers: list[dict[str, object]], risk: list[dict[str, object]]) -> str:
    stop = vote["early_stop"]
    lines = ["## Self-consistency, MoT DATE gpt-3.5 CoT (20 samples per question)", "",
             f"- AUROC of the majority's vote share for 'the majority answer is correct': "
             f"{vote['auroc_majority']:.3f}; of the first answer's share for 'the first answer is "
             f"correct': {vote['auroc_first']:.3f} ({vote['questions']} questions).",
             f"- Early stopping (k ≤ 20, batches of 2, at least 3): {stop['mean_samples']:.2f} votes "
             f"per question on average (max {stop['max_samples']}); its accept/escalate decision (share ≥ ½) "
             f"equals the decision with all 20 votes on {stop['agreement']:.1%} of questions. A fixed k "
             f"needs k = {vote['fixed_k_for_equal_agreement']} votes for the same agreement.", "",
             "## Trained verifiers (test AUROC / ECE)", "",
             "| data | model | kind | train n | test n | test accuracy | AUROC | ECE | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in verifiers:
        lines.append(f"| {r['data']} | {r['model']} | {r['kind']} | {r['train_n']} | {r['test_n']} | "
                     f"{r['test_accuracy']:.3f} | {r['auroc']:.3f} | {r['ece']:.3f} | {r['train_s']:.0f} |")
    lines += ["", "## Risk target over 200 random calibration/test splits", "",
              "| confidence | α | δ | share of splits with test false-accept ≤ α | mean share accepted |",
              "|---|---|---|---|---|"]
    for r in risk:
        lines.append(f"| {r['data']} | {r['alpha']} | {r['delta']} | {r['share_held']:.3f} | {r['mean_accepted']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="one cheap model per data set")
    parser.add_argument("--no-cross-encoder", action="store_true")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--merge", action="store_true",
                        help="add verifier rows to the existing results (vote and risk kept)")
    parser.add_argument("--sets", help="comma-separated: arc,winogrande,mbpp,gsm8k")
    parser.add_argument("--kinds", help="comma-separated: sklearn,cross-encoder")
    args = parser.parse_args(argv)
    sets = args.sets.split(",") if args.sets else None
    kinds = args.kinds.split(",") if args.kinds else None
    if args.merge:
        old = json.loads((OUT / "estimators.json").read_text())
        vote, risk = old["vote"], old["risk"]
        new = verifiers_table(args.data, not args.no_cross_encoder, args.epochs, args.quick, sets, kinds)
        keys = {(r["data"], r["model"], r["kind"]) for r in new}
        verifiers = [r for r in old["verifiers"] if (r["data"], r["model"], r["kind"]) not in keys] + new
        order = list(SETS) + ["gsm8k"]
        verifiers.sort(key=lambda r: (order.index(r["data"]), r["model"], r["kind"]))
    else:
        vote = mot_vote(args.data)
        risk = risk_table(args.data)
        verifiers = verifiers_table(args.data, not args.no_cross_encoder, args.epochs, args.quick, sets, kinds)
    OUT.mkdir(exist_ok=True)
    text = markdown(vote, verifiers, risk)
    command = " ".join([".venv/bin/python benchmarks/estimators.py", *(argv if argv is not None else sys.argv[1:])])
    commands = [*old.get("commands", []), command] if args.merge else [command]  # a merge keeps its history
    produced = ", then ".join(f"`{c}`" for c in commands)
    (OUT / "estimators.md").write_text(f"Produced by {produced}\n\n" + text)
    (OUT / "estimators.json").write_text(json.dumps({"vote": vote, "verifiers": verifiers, "risk": risk,
                                                     "commands": commands}, indent=1, default=float) + "\n")
    print(text)


if __name__ == "__main__":
    main()
