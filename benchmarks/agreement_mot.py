"""MoT DATE: agreement between gpt-3.5's chain-of-thought (CoT) and program-of-thought (PoT)
samples — the paper's mixture of thoughts — against the vote share of one prompt style.

    .venv/bin/python benchmarks/agreement_mot.py [--data ../shared/data]

For k = 1..10 samples per style: the CoT-only signal is the vote share of the CoT majority
over k CoT samples (``verifiers.vote_confidence``); the mixture signal is the agreement share
of the majority over k CoT + k PoT samples (``verifiers.agreement_matrix``, exact answers).
Each signal's AUROC against its answer's correctness on the test half (split as the bench:
``np.random.RandomState(0).permutation``, first half train), and the cost of a two-tier
cascade (gpt-3.5 samples → gpt-4 CoT SC@3 below a threshold chosen on train as the cheapest
reaching 100 % or 99 % of gpt-4's train accuracy) on test, as a share of always asking gpt-4. Costs follow the
replay provider's rules (tokens = ceil(characters / 4); the paper's 8-shot prompt billed once
per call; every sample billed; the paper's prices). Writes
benchmarks/results/agreement_mot.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from cascade.providers import load_table
from verifiers import AnswerKind, agreement_matrix, auroc, simulate_cascade

OUT = Path(__file__).resolve().parent / "results"
PREFIX = {"cot": 1785, "pot": 2577}
GPT35 = (1.5, 2.0)  # $ per 1M input / output tokens
GPT4 = (30.0, 60.0)


def _cost(prompt: str, prefix: int, chars: list[int], price: tuple[float, float]) -> float:
    tokens_in = math.ceil((len(prompt) + prefix) / 4)
    tokens_out = math.ceil(sum(chars) / 4)
    return (tokens_in * price[0] + tokens_out * price[1]) / 1e6


def _record(table, row):  # type: ignore[no-untyped-def]
    return next(iter(row.records.values()))


def _majority(answers: list[str]) -> str:
    return Counter(answers).most_common(1)[0][0]


def signals(data: Path, k: int) -> dict[str, np.ndarray]:
    """Per question: CoT-only and CoT+PoT confidence, correctness of each answer, costs."""
    cot = load_table(data / "mot_date/gpt35/date_cot1.json")
    pot = load_table(data / "mot_date/gpt35/date_pot1.json")
    gpt4 = load_table(data / "mot_date/gpt4/date_cot1.json")
    out: dict[str, list[float]] = {key: [] for key in (
        "cot_conf", "cot_right", "cot_cost", "mix_conf", "mix_right", "mix_cost", "gpt4_right", "gpt4_cost")}
    for rc, rp, r4 in zip(cot.rows, pot.rows, gpt4.rows):
        c, p, g = _record(cot, rc), _record(pot, rp), _record(gpt4, r4)
        gold = rc.gold
        cot_answers = list(c.samples[:k])
        top = _majority(cot_answers)
        out["cot_conf"].append(cot_answers.count(top) / k)
        out["cot_right"].append(float(top == gold))
        out["cot_cost"].append(_cost(rc.prompt, PREFIX["cot"], list(c.output_chars[:k]), GPT35))
        mixed = cot_answers + list(p.samples[:k])
        matrix = agreement_matrix(mixed, AnswerKind.EXACT)
        support = (matrix == 1).sum(axis=1)
        best = int(np.argmax(support))
        out["mix_conf"].append(float(support[best]) / len(mixed))
        out["mix_right"].append(float(mixed[best] == gold))
        out["mix_cost"].append(out["cot_cost"][-1] + _cost(rp.prompt, PREFIX["pot"], list(p.output_chars[:k]), GPT35))
        vote = _majority(list(g.samples[:3]))
        out["gpt4_right"].append(float(vote == gold))
        out["gpt4_cost"].append(_cost(r4.prompt, PREFIX["cot"], list(g.output_chars[:3]), GPT4))
    return {key: np.asarray(v) for key, v in out.items()}


def _cascade(conf: np.ndarray, right: np.ndarray, cost: np.ndarray, s: dict[str, np.ndarray],
             threshold: float, rows: np.ndarray) -> tuple[float, float]:
    spent, ok, _ = simulate_cascade([threshold], [conf[rows], s["gpt4_right"][rows]],
                                    [right[rows].astype(bool), s["gpt4_right"][rows].astype(bool)],
                                    [cost[rows], s["gpt4_cost"][rows]])
    return float(spent.sum()), float(ok.mean())


def evaluate(s: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, style: str,
             share: float) -> dict[str, float]:
    conf, right, cost = s[f"{style}_conf"], s[f"{style}_right"], s[f"{style}_cost"]
    target = share * float(s["gpt4_right"][train].mean())
    choices = sorted({float(v) for v in conf[train]} | {math.inf})
    reaching = [t for t in choices if _cascade(conf, right, cost, s, t, train)[1] >= target]
    threshold = min(reaching, key=lambda t: _cascade(conf, right, cost, s, t, train)[0])
    spent, accuracy = _cascade(conf, right, cost, s, threshold, test)
    return {"auroc": auroc(conf[test], right[test].astype(bool)), "threshold": threshold,
            "test_accuracy": accuracy, "gpt4_accuracy": float(s["gpt4_right"][test].mean()),
            "cost_share": spent / float(s["gpt4_cost"][test].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    rows = []
    for k in (1, 2, 3, 5, 7, 10):
        s = signals(args.data, k)
        n = len(s["cot_conf"])
        order = np.random.RandomState(0).permutation(n)
        train, test = np.sort(order[: n // 2]), np.sort(order[n // 2:])
        for style in ("cot", "mix"):
            for share in (1.0, 0.99):
                result = {"k": k, "signal": "CoT vote share" if style == "cot" else "CoT+PoT agreement",
                          "target": share, **evaluate(s, train, test, style, share)}
                rows.append(result)
                print(result, flush=True)
    lines = ["Produced by `.venv/bin/python benchmarks/agreement_mot.py`", "",
             "| samples per style k | signal | test AUROC | train target (× gpt-4's accuracy) | threshold (train) | test accuracy | gpt-4 SC@3 accuracy | cost, share of gpt-4 SC@3 |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['k']} | {r['signal']} | {r['auroc']:.3f} | {r['target']:.2f} | {r['threshold']:.3f} | {r['test_accuracy']:.3f} | "
              f"{r['gpt4_accuracy']:.3f} | {r['cost_share']:.1%} |" for r in rows]
    OUT.mkdir(exist_ok=True)
    (OUT / "agreement_mot.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (OUT / "agreement_mot.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
