"""Data nobody tuned to, from the RouteLLM repository (lm-sys/RouteLLM), as bench files.

    python benchmarks/outside_data.py ROUTELLM OUTDIR

``ROUTELLM`` is a checkout of the repository or its bare git mirror (read with
``git --git-dir ROUTELLM show HEAD:path``; nothing is copied into this repository). Writes:

- ``mmlu_train.csv`` / ``mmlu_test.csv``: RouteLLM's 57 MMLU response files
  (``routellm/evals/mmlu/responses/mmlu_*.csv``, in name order; 14,042 rows with ``prompt``
  and one True/False column per model, **no answers, no costs**) split 50/50 with
  ``np.random.RandomState(0).permutation(n)``, first ``n // 2`` train (the rule of
  ``../shared/BASELINES.md``).
- ``mmlu_all.csv``: the same 14,042 rows unsplit, in file order (the input of
  ``benchmarks/timing_file.py``, which splits them itself with the same rule).
- ``mtbench.csv``: MT-Bench as RouterBench format with **graded** quality, one row per
  (question, turn) — 80 questions × 2 turns. Quality = the GPT-4 judge's score / 10
  (``routellm/evals/mt_bench/judgements.jsonl``); ``|model_response`` = the model's answer to
  that turn, cut from the transcript the judge saw; ``prompt`` = the user turns so far (a
  Python-literal list, as RouterBench stores prompts: identical for both models);
  ``|total_cost`` = tokens (characters / 4, unrounded, as BASELINES counts GSM8K) × public
  prices per 1M tokens — gpt-4-1106-preview $10 / $30, Mixtral-8x7B-Instruct $0.6 / $0.6 —
  where the input of turn 2 is the whole conversation the model saw (turn 1, *its own*
  answer, turn 2) and the output is its answer.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

MMLU_DIR = "routellm/evals/mmlu/responses"
JUDGEMENTS = "routellm/evals/mt_bench/judgements.jsonl"
QUESTIONS = "routellm/evals/mt_bench/question.jsonl"
GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
PRICES = {GPT4: (10.0, 30.0), MIXTRAL: (0.6, 0.6)}  # USD per 1M input / output tokens
MODELS = (MIXTRAL, GPT4)  # cheapest first


class OutsideDataError(Exception):
    """The RouteLLM source cannot be read or does not hold what this script expects."""


class Source:
    """Files of a RouteLLM checkout, or of its bare git mirror (``git show HEAD:path``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = (root / "HEAD").is_file() and (root / "objects").is_dir()
        if not self.bare and not (root / "routellm").is_dir():
            raise OutsideDataError(f"{root} is neither a RouteLLM checkout nor its bare git mirror")

    def list(self, folder: str) -> list[str]:
        if not self.bare:
            return sorted(str(p.relative_to(self.root)) for p in (self.root / folder).iterdir())
        out = self._git("ls-tree", "--name-only", f"HEAD:{folder}")
        return sorted(f"{folder}/{name}" for name in out.splitlines() if name)

    def read(self, path: str) -> str:
        if not self.bare:
            return (self.root / path).read_text(encoding="utf-8")
        return self._git("show", f"HEAD:{path}")

    def _git(self, *args: str) -> str:
        done = subprocess.run(["git", "--git-dir", str(self.root), *args], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise OutsideDataError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def mmlu_rows(source: Source) -> tuple[list[str], list[dict[str, str]]]:
    files = [p for p in source.list(MMLU_DIR) if Path(p).name.startswith("mmlu_") and p.endswith(".csv")]
    if not files:
        raise OutsideDataError(f"no mmlu_*.csv under {MMLU_DIR}")
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for path in files:
        reader = csv.DictReader(io.StringIO(source.read(path), newline=""))
        if header is None:
            header = list(reader.fieldnames or [])
        elif list(reader.fieldnames or []) != header:
            raise OutsideDataError(f"{path}: columns {reader.fieldnames} differ from {header}")
        rows.extend(reader)
    assert header is not None
    return header, rows


def split_halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.RandomState(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _write(path: Path, header: list[str], rows: Iterable[Mapping[str, object]]) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def conversation(user_prompt: str) -> tuple[list[str], list[str]]:
    """(user turns, assistant answers) of the judge's transcript, single- or multi-turn."""
    start = "<|The Start of Assistant A's Conversation with User|>"
    if start in user_prompt:
        body = user_prompt.split(start, 1)[1].split("<|The End of Assistant A's Conversation with User|>", 1)[0]
        users, answers = [], []
        for chunk in body.split("### User:\n")[1:]:
            question, sep, answer = chunk.partition("\n\n### Assistant A:\n")
            if not sep:
                raise OutsideDataError("a multi-turn transcript without an answer")
            users.append(question.strip())
            answers.append(answer.strip())
        return users, answers
    question = user_prompt.split("[Question]\n", 1)[1].split("\n\n[The Start of", 1)[0]
    answer = user_prompt.split("[The Start of Assistant's Answer]\n", 1)[1].split("\n[The End of Assistant's Answer]", 1)[0]
    return [question.strip()], [answer.strip()]


def _cost(model: str, input_chars: int, output_chars: int) -> float:
    price_in, price_out = PRICES[model]
    return (input_chars / 4 * price_in + output_chars / 4 * price_out) / 1e6


def mtbench_rows(source: Source) -> list[dict[str, object]]:
    questions = {q["question_id"]: q for q in map(json.loads, source.read(QUESTIONS).splitlines()) if q}
    judged: dict[tuple[int, int, str], dict] = {}
    for line in source.read(JUDGEMENTS).splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        key = (record["question_id"], record["turn"], record["model"])
        if key in judged:
            raise OutsideDataError(f"two judgements for question {key[0]} turn {key[1]} of {key[2]}")
        judged[key] = record
    rows = []
    for qid in sorted(questions):
        turns = questions[qid]["turns"]
        for turn in (1, 2):
            row: dict[str, object] = {"sample_id": f"mt-bench.{qid}.{turn}",
                                      "prompt": repr(list(turns[:turn])),
                                      "eval_name": f"mt-bench-{questions[qid]['category']}"}
            for model in MODELS:
                record = judged.get((qid, turn, model))
                if record is None:
                    raise OutsideDataError(f"no judgement for question {qid} turn {turn} of {model}")
                users, answers = conversation(record["user_prompt"])
                if len(answers) != turn or users[-1] != turns[turn - 1].strip():
                    raise OutsideDataError(f"question {qid} turn {turn} of {model}: the transcript "
                                           "does not match question.jsonl")
                seen = sum(map(len, users)) + sum(map(len, answers[:-1]))  # its own earlier answer
                row[model] = float(record["score"]) / 10
                row[model + "|model_response"] = repr([answers[-1]])
                row[model + "|total_cost"] = _cost(model, seen, len(answers[-1]))
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("routellm", type=Path, help="RouteLLM checkout or bare git mirror")
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    try:
        source = Source(args.routellm)
        args.outdir.mkdir(parents=True, exist_ok=True)
        header, rows = mmlu_rows(source)
        train, test = split_halves(len(rows))
        n_train = _write(args.outdir / "mmlu_train.csv", header, (rows[i] for i in train))
        n_test = _write(args.outdir / "mmlu_test.csv", header, (rows[i] for i in test))
        _write(args.outdir / "mmlu_all.csv", header, rows)  # in file order: benchmarks/timing_file.py's SRC
        mt = mtbench_rows(source)
        mt_header = ["sample_id", "prompt", "eval_name"] + [
            m + suffix for m in MODELS for suffix in ("", "|model_response", "|total_cost")]
        n_mt = _write(args.outdir / "mtbench.csv", mt_header, mt)
    except (OutsideDataError, OSError, KeyError, json.JSONDecodeError, csv.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"mmlu: {len(rows)} rows (mmlu_all.csv) -> {n_train} train, {n_test} test; mtbench: {n_mt} rows "
          f"(graded score / 10) in {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
