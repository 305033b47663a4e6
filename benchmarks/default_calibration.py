"""Calibrate the embedded default (policies/default.yaml) on everyday prompts with checkable
answers, and count the wrong answers it accepts before and after.

    OMP_WAIT_POLICY=PASSIVE nice .venv/bin/python benchmarks/default_calibration.py
    .venv/bin/python benchmarks/default_calibration.py --from-json   # re-score, no model calls
    (--alpha A: another risk target; --out DIR: write elsewhere than benchmarks/results;
    --engine: also run the 50 held-out prompts through the real engine and the shipped policy)

1. Generates 110 prompts with code (arithmetic, capitals, simple facts), so every answer can be
   checked: 60 for calibration, 50 held out for the before/after table (a fixed seed; the two
   sets share no prompt).
2. Asks both tiers of the default policy every prompt, through the engine's own tier settings
   (system prompt, few-shot template, stop sequences, max_tokens, temperature 0), and keeps
   each answer's token logprobs and finish_reason.
3. Before: the old rule (logprob mean, thresholds 0.75 / 0.6, truncated and degenerate answers
   judged like any other). After: truncated answers are never accepted, the degeneracy checks
   set confidence 0, and each tier's statistic and threshold are chosen on the calibration set
   (the statistic with the best AUROC; the threshold by ``verifiers.risk_threshold``: wrong
   accepts certified <= ALPHA at confidence 1 - DELTA; none certified: ``never``).
4. Writes benchmarks/results/default_calibration.{json,md}.

The models run at temperature 0, so a second run gives the same answers (logprobs may move in
the last digits: llama.cpp's prefix cache).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ALPHA, DELTA = 0.05, 0.20
BEFORE = {"smollm2": ("mean", 0.75), "gemma3": ("mean", 0.6)}  # policies/default.yaml until now
STATISTICS = ("mean", "min", "quantile")

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Egypt", "Cairo"),
    ("Russia", "Moscow"), ("China", "Beijing"), ("India", "New Delhi"), ("Brazil", "Brasilia"),
    ("Mexico", "Mexico City"), ("Portugal", "Lisbon"), ("Greece", "Athens"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Poland", "Warsaw"), ("Ireland", "Dublin"), ("Austria", "Vienna"),
    ("Kenya", "Nairobi"), ("Argentina", "Buenos Aires"), ("Turkey", "Ankara"),
    ("Thailand", "Bangkok"), ("Peru", "Lima"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Hungary", "Budapest"), ("Cuba", "Havana"), ("Chile", "Santiago"),
]
FACTS = [
    ("How many days are in a week?", ("7", "seven")),
    ("How many hours are in a day?", ("24", "twenty-four")),
    ("How many minutes are in an hour?", ("60", "sixty")),
    ("How many months are in a year?", ("12", "twelve")),
    ("How many continents are there on Earth?", ("7", "seven")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("What is the largest planet in the solar system?", ("jupiter",)),
    ("Which planet is known as the Red Planet?", ("mars",)),
    ("What is the chemical symbol for gold?", ("au",)),
    ("What is the boiling point of water in degrees Celsius?", ("100",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("What is the largest ocean on Earth?", ("pacific",)),
    ("What language is mainly spoken in Brazil?", ("portuguese",)),
    ("What is the currency of Japan?", ("yen",)),
    ("What colour is the sky on a clear day?", ("blue",)),
    ("What gas do plants take in from the air to make food?", ("carbon dioxide", "co2")),
    ("What is the opposite of hot?", ("cold",)),
    ("What is frozen water called?", ("ice",)),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("What is the closest star to the Earth?", ("sun",)),
]


@dataclass(frozen=True)
class Item:
    prompt: str
    answers: tuple[str, ...]  # any of them, as a whole word (numbers: as a number)
    kind: str


def make_prompts(seed: int = 0) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    seen: set[str] = set()
    while len(items) < 30:
        a, b = rng.randint(11, 49), rng.randint(11, 49)
        op = rng.choice(["+", "-", "times"])
        if op == "-" and a < b:
            a, b = b, a
        value = a + b if op == "+" else a - b if op == "-" else a * b
        if op == "times" and (a > 20 or b > 12):
            continue
        prompt = f"What is {a} {op} {b}?"
        if prompt in seen or value in (a, b):
            continue
        seen.add(prompt)
        items.append(Item(prompt, (str(value),), "arithmetic"))
    items += [Item(f"What is the capital of {country}?", (capital.lower(),), "capital")
              for country, capital in CAPITALS]
    items += [Item(q, a, "fact") for q, a in FACTS]
    # 80 so far; 30 more arithmetic with other operands
    while len(items) < 110:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        prompt = f"What is {a} + {b}?"
        if prompt in seen or a + b in (a, b):
            continue
        seen.add(prompt)
        items.append(Item(prompt, (str(a + b),), "arithmetic"))
    rng.shuffle(items)
    return items


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def correct(item: Item, answer: str) -> bool:
    text = answer.lower()
    for expected in item.answers:
        if expected.lstrip("-").isdigit():
            numbers = {float(n.replace(",", "")) for n in _NUMBER.findall(text)
                       if n.replace(",", "").strip("-.")}
            if float(expected) in numbers:  # "100.0" is 100
                return True
        elif re.search(rf"\b{re.escape(expected)}\b", text.replace("í", "i")):
            return True
    return False


# --- asking the models --------------------------------------------------------------------------


async def ask_all(items: Sequence[Item]) -> list[dict[str, dict[str, object]]]:
    from cascade import Cascade
    from cascade._request import make_request

    rows: list[dict[str, dict[str, object]]] = []
    engine = Cascade.from_yaml(ROOT / "policies" / "default.yaml")
    async with engine:
        for n, item in enumerate(items):
            request = make_request(item.prompt, "default")
            row: dict[str, dict[str, object]] = {}
            for tier in engine.tiers:
                started = time.perf_counter()
                completion = await tier.provider.complete(tier.call_for(request))
                choice = completion.choices[0]
                row[tier.name] = {
                    "answer": choice.text, "finish_reason": choice.finish_reason,
                    "logprobs": [float(x) for x in choice.token_logprobs or ()],
                    "seconds": round(time.perf_counter() - started, 3),
                }
            rows.append(row)
            print(f"{n + 1}/{len(items)} {item.prompt!r}: "
                  + " | ".join(f"{k}: {v['answer']!r}" for k, v in row.items()), flush=True)
    return rows


async def engine_check(items: Sequence[Item]) -> dict[str, int]:
    """The held-out prompts through the real engine and the shipped policies/default.yaml:
    the same counts as the simulation's "after" column, or the simulation is wrong."""
    from cascade import Cascade

    counts = {"accepted": 0, "wrong_accepted": 0, "right_accepted": 0, "not_accepted": 0,
              "right_answer_returned": 0, "escalations": 0}
    async with Cascade.from_yaml(ROOT / "policies" / "default.yaml") as engine:
        for item in items:
            result = await engine.run(item.prompt)
            right = correct(item, result.answer)
            counts["escalations"] += result.escalations
            counts["right_answer_returned"] += right
            if result.accepted:
                counts["accepted"] += 1
                counts["right_accepted" if right else "wrong_accepted"] += 1
            else:
                counts["not_accepted"] += 1
    return counts


# --- scoring ------------------------------------------------------------------------------------


def confidence(record: dict[str, object], statistic: str) -> float:
    from verifiers import LogprobStatistic, summarise

    logprobs = record["logprobs"]
    assert isinstance(logprobs, list)
    if not logprobs:
        return 0.0
    value = summarise(logprobs, LogprobStatistic(statistic), 0.1)
    return min(1.0, math.exp(min(0.0, value)))


def guarded(item: Item, record: dict[str, object], statistic: str) -> float:
    from verifiers import find_degeneracy

    if find_degeneracy(item.prompt, str(record["answer"])):
        return 0.0
    return confidence(record, statistic)


def truncated(record: dict[str, object]) -> bool:
    return record["finish_reason"] in ("length", "max_tokens")


def calibrate(items: Sequence[Item], rows: Sequence[dict[str, dict[str, object]]],
              tiers: Sequence[str], alpha: float = ALPHA) -> dict[str, tuple[str, float]]:
    """Per tier: the statistic with the best AUROC (checks applied), then the certified
    risk threshold (``math.inf``: none certified)."""
    from verifiers import CalibrationError, auroc, risk_threshold

    chosen: dict[str, tuple[str, float]] = {}
    for tier in tiers:
        ok = [correct(i, str(r[tier]["answer"])) and not truncated(r[tier]) for i, r in zip(items, rows)]
        best: tuple[float, str] = (-1.0, "mean")
        for statistic in STATISTICS:
            conf = [0.0 if truncated(r[tier]) else guarded(i, r[tier], statistic)
                    for i, r in zip(items, rows)]
            try:
                score = auroc(conf, ok)
            except CalibrationError:
                score = 0.5
            print(f"calibration: {tier} {statistic}: AUROC {score:.3f}, {sum(ok)}/{len(ok)} right")
            best = max(best, (score, statistic))
        statistic = best[1]
        conf = [0.0 if truncated(r[tier]) else guarded(i, r[tier], statistic)
                for i, r in zip(items, rows)]
        threshold = risk_threshold(conf, ok, alpha, DELTA)
        # as written into the policy: 4 decimals, rounded up (never looser than chosen)
        chosen[tier] = (statistic, threshold if math.isinf(threshold) else math.ceil(threshold * 1e4) / 1e4)
    return chosen


def simulate(items: Sequence[Item], rows: Sequence[dict[str, dict[str, object]]],
             rule: dict[str, tuple[str, float]], checks: bool) -> dict[str, object]:
    """The default cascade's outcome per prompt under ``rule`` (tier -> statistic, threshold)."""
    tiers = list(rule)
    counts = {"prompts": len(items), "accepted": 0, "wrong_accepted": 0, "right_accepted": 0,
              "not_accepted": 0, "right_answer_returned": 0, "escalations": 0,
              "accepted_at": {t: 0 for t in tiers}}
    examples: list[dict[str, object]] = []
    for item, row in zip(items, rows):
        returned, accepted_tier = None, None
        for position, tier in enumerate(tiers):
            record = row[tier]
            statistic, threshold = rule[tier]
            if checks:
                ok = not truncated(record) and guarded(item, record, statistic) >= threshold
            else:
                ok = confidence(record, statistic) >= threshold
            returned = record
            if ok:
                accepted_tier = tier
                break
            if position < len(tiers) - 1:
                counts["escalations"] += 1  # type: ignore[operator]
        assert returned is not None
        right = correct(item, str(returned["answer"]))
        counts["right_answer_returned"] += right  # type: ignore[operator]
        if accepted_tier is None:
            counts["not_accepted"] += 1  # type: ignore[operator]
            continue
        counts["accepted"] += 1  # type: ignore[operator]
        counts["accepted_at"][accepted_tier] += 1  # type: ignore[index]
        counts["right_accepted" if right else "wrong_accepted"] += 1  # type: ignore[operator]
        if not right:
            examples.append({"prompt": item.prompt, "tier": accepted_tier,
                             "answer": returned["answer"]})
    counts["wrong_accepted_examples"] = examples
    return counts


def _threshold(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.4f}"


def report(before: dict[str, object], after: dict[str, object],
           rule: dict[str, tuple[str, float]], command: str) -> str:
    rows = [("accepted", "accepted"), ("wrong answers accepted", "wrong_accepted"),
            ("right answers accepted", "right_accepted"),
            ("not accepted (best answer returned, marked)", "not_accepted"),
            ("right answer returned (accepted or not)", "right_answer_returned"),
            ("escalations", "escalations")]
    lines = ["| 50 held-out everyday prompts | before | after |", "| --- | ---: | ---: |"]
    lines += [f"| {label} | {before[key]} | {after[key]} |" for label, key in rows]
    chosen = ", ".join(f"{t}: logprob {s}, threshold {_threshold(v)}" for t, (s, v) in rule.items())
    return "\n".join([*lines, "", f"After (chosen on the 60 calibration prompts): {chosen}.",
                      f"Command: `{command}`"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-json", action="store_true",
                        help="re-score the answers saved by the last run (no model calls)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--engine", action="store_true",
                        help="also run the held-out prompts through the real engine and the "
                        "shipped default policy, and print its counts beside the simulation's")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help="certified bound on wrong accepted answers per request")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    items = make_prompts()
    calibration, held_out = items[:60], items[60:]
    saved = RESULTS / "default_calibration.json"
    if args.from_json:
        rows = json.loads(saved.read_text())["answers"]
    else:
        import anyio

        rows = anyio.run(ask_all, items)
    tiers = list(rows[0])
    rule = calibrate(calibration, rows[:60], tiers, args.alpha)
    before = simulate(held_out, rows[60:], {t: BEFORE[t] for t in tiers}, checks=False)
    after = simulate(held_out, rows[60:], rule, checks=True)
    command = "OMP_WAIT_POLICY=PASSIVE nice .venv/bin/python benchmarks/default_calibration.py"
    table = report(before, after, rule, command)
    print(table)
    if args.engine:
        import anyio

        real = anyio.run(engine_check, held_out)
        print("engine, policies/default.yaml, held-out prompts:", real)
        print("simulation 'after':", {k: after[k] for k in real})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default_calibration.json").write_text(json.dumps({
        "alpha": args.alpha, "delta": DELTA, "before_rule": BEFORE,
        "after_rule": {t: [s, None if math.isinf(v) else v] for t, (s, v) in rule.items()},
        "before": before, "after": after,
        "prompts": [asdict(i) for i in items], "answers": rows}, indent=1))
    (args.out / "default_calibration.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
