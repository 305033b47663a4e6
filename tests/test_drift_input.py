"""Router input drift: a kNN router trained (real MiniLM embeddings) on arithmetic questions;
live traffic of new arithmetic questions, then of history and cooking questions. The detector
reuses the router's similarity (nothing embedded twice), fires after the switch and not
before, and resolves once the traffic is back (hysteresis on the interval); the policy's
``slo.input_drift`` needs a learned router; PSI and the held-out baseline are unit-tested."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from scripted import FakeClock, Fixed, Scripted

from cascade import Cascade, Tier, parse_policy
from cascade._tier import Routing
from cascade.errors import ConfigError, PolicyError
from cascade.routing import (
    CorrectnessData,
    KnnWeighting,
    LearnedRouter,
    router_text,
    train_knn,
)
from cascade.state import MemoryStore
from cascade.telemetry import (
    AlertKind,
    AlertState,
    InputDriftTarget,
    SloMonitor,
    held_out_similarities,
    psi,
)
from cascade.telemetry._slo import input_drift_target

pytestmark = pytest.mark.anyio
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"


def _arithmetic(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ops = ["plus", "minus", "times", "divided by"]
    return [f"Question: What is {rng.randint(2, 999)} {rng.choice(ops)} {rng.randint(2, 99)}?"
            f"\nAnswer:" for _ in range(n)]


_TOPICS = ["Who founded the {} empire?", "In which year did the {} revolution begin?",
           "How long should I bake {} bread?", "What spices go into a {} curry?",
           "Which river flows through the {} capital?", "Who painted the famous {} portrait?"]
_WORDS = ["Mongol", "Roman", "French", "Ottoman", "Persian", "Inca", "Russian", "Aztec",
          "Mughal", "Khmer"]


def _other(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Question: {rng.choice(_TOPICS).format(rng.choice(_WORDS))}\nAnswer:"
            for _ in range(n)]


@pytest.mark.models
async def test_fires_after_the_switch_to_unfamiliar_queries_and_not_before() -> None:
    from verifiers import shared_encoder

    encoder = shared_encoder()
    texts = [router_text(p) for p in _arithmetic(200, seed=1)]
    labels = np.random.default_rng(0).integers(0, 2, (len(texts), 2)).astype(np.float32)
    data = CorrectnessData("synthetic", tuple(texts), ("cheap-model", "dear-model"), labels, None)
    model = train_knn(data, k=5, weighting=KnnWeighting.SIMILARITY,
                      embeddings=encoder.encode(texts))
    calls: list[int] = []

    def embed(batch: list[str]) -> np.ndarray:
        calls.append(len(batch))
        return encoder.encode(batch)

    router = LearnedRouter(model, (0, 1), (0.5, 0.0), 1, embed, model.min_similarity)
    clock = FakeClock(1_000_000.0)
    target = InputDriftTarget.from_router("faq", router, window_s=900, min_queries=30)
    assert target.baseline <= 0.02  # held out: about the router's cold-start quantile (1 %)
    monitor = SloMonitor((), store=MemoryStore(clock=clock), clock=clock, input_drift=target)
    tiers = [Tier("cheap", "cheap-model", Scripted("4"), Fixed(0.9), 0.5),
             Tier("dear", "dear-model", Scripted("4"))]
    engine = Cascade(tiers, feature="faq", routing=Routing(router), slo=monitor, metrics=False)
    changes: list[tuple[int, object]] = []
    plan = _arithmetic(100, seed=2) + _other(40, seed=3) + _arithmetic(120, seed=4)
    for i, prompt in enumerate(plan):
        clock.now += 10
        result = await engine.run(prompt)
        assert result.route is not None and result.route.similarity is not None
        changes += [(i, c) for c in await monitor.evaluate()]
    assert len(calls) == len(plan) and set(calls) == {1}  # the router's embedding, only
    [(fired_at, fired), (resolved_at, resolved)] = changes
    assert fired.state is AlertState.FIRING and fired.kind is AlertKind.INPUT_DRIFT  # type: ignore[attr-defined]
    assert 100 < fired_at <= 130  # after the switch (request 100), within 30 queries
    assert fired.key == "faq/router/input_drift" and "PSI" in fired.detail  # type: ignore[attr-defined]
    assert resolved.state is AlertState.RESOLVED and resolved_at > 140  # type: ignore[attr-defined]
    state = await monitor.input_drift_state()
    assert state is not None and state["share"] < 0.05 and state["psi"] < 0.5
    snapshot = await monitor.snapshot()
    assert 80 <= snapshot["features"]["faq"]["input_drift"]["queries"] <= 90  # type: ignore[index]
    from cascade.cli._report import _drift_line

    line = _drift_line(snapshot["features"]["faq"]["input_drift"])  # type: ignore[index]
    assert line is not None and line.startswith("router input drift: ") and "PSI" in line
    spec = parse_policy(_POLICY + "slo: {input_drift: {margin: 0.2, min_queries: 5}}\n"
                        "routing: {router: {kind: knn, artifact: unused}}\n").slo
    assert spec is not None
    built = input_drift_target(spec, "faq", Routing(router))  # what the policy's engine builds
    assert built.max_share == pytest.approx(built.baseline + 0.2) and built.min_queries == 5
    with pytest.raises(ConfigError, match="needs a learned router"):
        input_drift_target(spec, "faq", None)


def test_psi_and_the_held_out_baseline() -> None:
    assert psi([0.5, 0.5], [50, 50]) == pytest.approx(0.0)
    assert psi([0.5, 0.5], [90, 10]) == pytest.approx(0.4 * np.log(0.9 / 0.5)
                                                      - 0.4 * np.log(0.1 / 0.5))
    x = np.eye(4, dtype=np.float32)
    x[1] = x[0]  # rows 0 and 1 are twins; 2 and 3 are alone
    assert held_out_similarities(x).tolist() == [1.0, 1.0, 0.0, 0.0]
    target = InputDriftTarget.from_similarities("faq", np.linspace(0, 1, 101), 0.05, margin=0.1)
    assert target.baseline == pytest.approx(5 / 101)  # 0, 0.01, ..., 0.04
    assert target.max_share == pytest.approx(5 / 101 + 0.1)
    assert len(target.expected) == 10 and sum(target.expected) == pytest.approx(1.0)
    assert target.bin(0.0) == 0 and target.bin(1.0) == 9
    with pytest.raises(ValueError, match="baseline"):
        InputDriftTarget.from_similarities("faq", np.zeros(10), 0.5, max_share=0.5)


_POLICY = (f"tiers:\n"
           f"  - {{name: small, model: cheap-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n"
           f"  - {{name: large, model: dear-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n")


def test_input_drift_in_the_policy_needs_a_learned_router() -> None:
    text = _POLICY + "slo: {input_drift: {margin: 0.2}}\n"
    with pytest.raises(PolicyError, match="input_drift needs a learned router"):
        parse_policy(text)
    with pytest.raises(PolicyError, match="margin"):
        parse_policy(text.replace("margin: 0.2", "margin: 2"))
