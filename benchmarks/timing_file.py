"""Build a TIMING file for ``cascade bench --csv``: real prompts and labels, synthetic responses.

    python benchmarks/timing_file.py SRC OUTDIR

SRC is RouteLLM's MMLU file (``prompt``, ``mistralai/Mixtral-8x7B-Instruct-v0.1``,
``gpt-4-1106-preview`` True/False; 14,042 rows, no responses, no costs). OUTDIR receives
``train.csv`` and ``test.csv`` in RouterBench format (``sample_id, prompt, eval_name``, one 0/1
column per model, ``<model>|model_response``, ``<model>|total_cost``), split 50/50 with
``np.random.RandomState(0).permutation(n)`` (first ``n // 2`` train).

**For timing only: its quality numbers mean nothing.** The prompts and the right/wrong labels
are real, but the responses are made up to be consistent with the labels: per row a hidden
letter G is drawn with a seeded RNG; a model that is right answers G, a wrong one another
letter (drawn independently per model), inside a few filler sentences of 200-600 characters
so that the verifier's MiniLM(answer tail) costs what it would on real responses. Agreement
between two right models is therefore certain and between two wrong ones a coin toss, which is
not how real models behave. Costs are characters / 4 tokens (prompt in, response out) times
the list prices (gpt-4-1106-preview $10 / $30, Mixtral-8x7B $0.6 / $0.6 per 1M tokens).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

MODELS = {  # model: ($ per 1M input tokens, $ per 1M output tokens)
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6),
    "gpt-4-1106-preview": (10.0, 30.0),
}
LETTERS = "ABCD"
SEED = 0
_FILLER = (
    "Let me work through the question step by step before committing to one of the options.",
    "First, I restate what is being asked and which facts are relevant here.",
    "Several of the options can be ruled out because they contradict the premise of the question.",
    "Comparing the remaining options carefully against the definitions involved helps decide.",
    "This also matches what is usually taught about this topic in introductory courses.",
    "One option looks plausible at first sight, but it ignores an important detail of the wording.",
    "Checking the reasoning once more, nothing in it seems to be inconsistent.",
    "It is worth double-checking the edge cases, since questions like this often hinge on them.",
)


def _truth(cell: str, row: int) -> bool:
    value = cell.strip().lower()
    if value in ("true", "1", "1.0"):
        return True
    if value in ("false", "0", "0.0"):
        return False
    raise SystemExit(f"row {row}: label {cell!r} is not True/False")


def _response(rng: np.random.Generator, prompt: str, letter: str) -> str:
    """The question's opening words, filler sentences (200-600 characters in all) and 'the
    answer is (X).' (the opening words keep responses distinct, as real ones are: an encoder
    cache must not get them for free)."""
    target = int(rng.integers(200, 501))  # the last sentence overshoots by up to ~100
    closing = f" Therefore, the answer is ({letter})."
    opening = " ".join(prompt.split()[:12]).replace('"', "'")
    parts: list[str] = [f'The question reads "{opening} ...".']
    while sum(len(p) + 1 for p in parts) + len(closing) < target:
        parts.append(_FILLER[int(rng.integers(len(_FILLER)))])
    return " ".join(parts) + closing


def _cost(prompt: str, response: str, prices: tuple[float, float]) -> float:
    return (len(prompt) / 4 * prices[0] + len(response) / 4 * prices[1]) / 1e6


def build(src: Path, out: Path) -> tuple[int, int]:
    csv.field_size_limit(sys.maxsize)
    with open(src, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("prompt", *MODELS) if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{src}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    rng = np.random.default_rng(SEED)
    header = ["sample_id", "prompt", "eval_name", *MODELS,
              *(m + "|model_response" for m in MODELS), *(m + "|total_cost" for m in MODELS)]
    records = []
    for i, raw in enumerate(rows, 1):
        prompt = raw["prompt"]
        hidden = LETTERS[int(rng.integers(len(LETTERS)))]
        record = {"sample_id": f"mmlu.{i}", "prompt": prompt, "eval_name": "mmlu"}
        for model, prices in MODELS.items():
            right = _truth(raw[model], i)
            letter = hidden if right else rng.choice([c for c in LETTERS if c != hidden])
            response = _response(rng, prompt, str(letter))
            record[model] = "1" if right else "0"
            record[model + "|model_response"] = response
            record[model + "|total_cost"] = f"{_cost(prompt, response, prices):.10f}"
        records.append(record)
    order = np.random.RandomState(SEED).permutation(len(records))
    half = len(records) // 2
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.csv", order[:half]), ("test.csv", order[half:])):
        with open(out / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, header)
            writer.writeheader()
            writer.writerows(records[j] for j in part)
    return half, len(records) - half


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="RouteLLM MMLU CSV (prompt + two True/False columns)")
    parser.add_argument("outdir", type=Path, help="where train.csv and test.csv are written")
    args = parser.parse_args(argv)
    train, test = build(args.src, args.outdir)
    print(f"{args.outdir}: train.csv {train} rows, test.csv {test} rows (a TIMING file: quality means nothing)")


if __name__ == "__main__":
    main()
