"""Routers: the pure decision rule and its calibration, each router kind on synthetic data with
a known best model, artifacts, cold start, and the engine's routing modes on replay data."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import anyio
import numpy as np
import pytest

from cascade import Cascade
from cascade.errors import PolicyError, RouterArtifactError, RoutingDataError
from cascade.routing import (
    CausalLLMRouter,
    CorrectnessData,
    KnnWeighting,
    LearnedRouter,
    Preference,
    PreferenceData,
    RouteCalibrationError,
    RouteContext,
    RouteReason,
    RouteTargetKind,
    RouteTier,
    columns_for,
    correctness_data,
    load_router_model,
    parse_grade,
    preference_data,
    share_thresholds,
    start_tier,
    starts,
    target_threshold,
    train_knn,
    train_mf,
)
from cascade.types import Decision
from verifiers import Asked, Usage

FIXTURES = Path(__file__).parent / "fixtures"
TOPICS = FIXTURES / "routing_routerbench.csv"
TIERS = (RouteTier("cheap", "cheap-model"), RouteTier("mid", "mid-model"), RouteTier("dear", "dear-model"))


# --- the decision rule and calibration (pure) ---------------------------------------------------


def test_start_is_the_cheapest_tier_that_passes() -> None:
    assert start_tier(np.array([0.4, 0.8, 0.9]), [0.5, 0.5, 0.5]) == 1
    assert start_tier(np.array([0.6, 0.8, 0.9]), [0.5, 0.5, 0.5]) == 0
    assert start_tier(np.array([0.1, 0.2, 0.3]), [0.5, 0.5, 0.5]) is None
    p = np.array([[0.4, 0.8, 0.9], [0.1, 0.2, 0.3], [0.9, 0.9, 0.9]])
    assert starts(p, [0.5, 0.5, 0.5], default=2).tolist() == [1, 2, 0]


def test_share_thresholds_hit_the_target_shares_exactly_without_ties() -> None:
    rng = np.random.default_rng(1)
    p = rng.random((1000, 3))
    for shares in ((0.2, 0.3, 0.5), (0.0, 0.5, 0.5), (0.6, 0.4, 0.0), (1.0, 0.0, 0.0)):
        got = np.bincount(starts(p, share_thresholds(p, shares), default=2), minlength=3) / 1000
        assert got == pytest.approx(shares, abs=1e-9)


def test_share_thresholds_reject_bad_shares() -> None:
    p = np.zeros((10, 2))
    with pytest.raises(RouteCalibrationError, match="sum to 1"):
        share_thresholds(p, (0.5, 0.6))
    with pytest.raises(RouteCalibrationError, match="2 shares for 3 tiers"):
        share_thresholds(np.zeros((10, 3)), (0.5, 0.5))


def test_quality_and_cost_targets_on_a_known_case() -> None:
    # 4 requests, 2 tiers: tier 0 right on the two it is confident about, tier 1 always right
    p = np.array([[0.9, 1.0], [0.8, 1.0], [0.3, 1.0], [0.2, 1.0]])
    correct = np.array([[1, 1], [1, 1], [0, 1], [0, 1]], dtype=float)
    cost = np.array([[1.0, 10.0]] * 4)
    chosen = target_threshold(p, correct, cost, RouteTargetKind.QUALITY, 1.0, default=1)
    assert (chosen.accuracy, chosen.cost, chosen.shares) == (1.0, 5.5, (0.5, 0.5))
    cheap = target_threshold(p, correct, cost, RouteTargetKind.COST, 0.35, default=1)
    assert (cheap.cost, cheap.accuracy) == (3.25, 0.75)  # one request may go to tier 1
    with pytest.raises(RouteCalibrationError):
        target_threshold(p, correct, cost, RouteTargetKind.COST, 0.01, default=1)


# --- learned routers on synthetic data with a known best model ----------------------------------


def _clusters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two clusters of unit vectors: model 0 right on cluster A only, model 1 on B only."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, 384), dtype=np.float32)
    centres[0, 0] = centres[1, 1] = 1.0
    which = rng.integers(0, 2, n)
    x = centres[which] + rng.normal(0, 0.01, (n, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.stack([which == 0, which == 1], axis=1).astype(np.float32)
    return x.astype(np.float32), labels


def _data(labels: np.ndarray) -> CorrectnessData:
    costs = np.tile([1.0, 5.0], (labels.shape[0], 1))
    return CorrectnessData("synthetic", tuple(f"q{i}" for i in range(len(labels))), ("a", "b"),
                           labels, costs)


def _fixed_embed(table: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    return lambda texts: np.stack([table[t] for t in texts])


@pytest.mark.parametrize("kind", ["knn", "mf"])
def test_learned_router_finds_the_right_model_per_cluster(kind: str, tmp_path: Path) -> None:
    x, labels = _clusters(200)
    data = _data(labels)
    model = (train_knn(data, embeddings=x) if kind == "knn"
             else train_mf(data, embeddings=x, epochs=300, lr=0.02))
    probe, truth = _clusters(50, seed=7)
    p = model.predict([""] * 50, probe)
    assert ((p[:, 1] > p[:, 0]) == (truth[:, 1] == 1)).mean() == 1.0
    assert model.expected_cost == (1.0, 5.0)
    reloaded = load_router_model(model.save(tmp_path / kind))
    assert np.allclose(reloaded.predict([""] * 50, probe), p, atol=2e-3)  # float16 neighbours


def test_mf_learns_from_pairwise_preferences() -> None:
    x, labels = _clusters(200)
    pairs = tuple(Preference(f"q{i}", 0, 1, float(labels[i, 0])) for i in range(200))
    model = train_mf(PreferenceData("prefs", ("a", "b"), pairs), embeddings=x, epochs=300, lr=0.02)
    probe, truth = _clusters(50, seed=3)
    p = model.predict([""] * 50, probe)
    assert ((p[:, 0] > p[:, 1]) == (truth[:, 0] == 1)).mean() >= 0.95
    assert model.header.metrics["objective"] == "preference"


def test_cold_start_goes_to_the_safe_default() -> None:
    x, labels = _clusters(200)
    model = train_knn(_data(labels), embeddings=x)
    assert -1.0 < model.min_similarity < 1.0
    far = np.zeros(384, dtype=np.float32)
    far[5] = 1.0  # orthogonal to both clusters
    near = x[0]
    tiers = (RouteTier("small", "a"), RouteTier("large", "b"))
    router = LearnedRouter(model, (0, 1), (0.5, 0.0), 1, _fixed_embed({"far": far, "near": near}),
                           model.min_similarity)
    cold = router.decide("far", tiers)
    assert cold.reason is RouteReason.COLD_START and cold.start == 1 and cold.cold_start
    warm = router.decide("near", tiers)
    assert warm.reason is RouteReason.PREDICTED and not warm.cold_start
    assert warm.start == (0 if labels[0, 0] else 1)
    assert [s.tier for s in warm.scores] == ["small", "large"]
    off = LearnedRouter(model, (0, 1), (0.5, 0.0), 1, _fixed_embed({"far": far}), None)
    assert off.decide("far", tiers).reason is not RouteReason.COLD_START
    bottom = LearnedRouter(model, (0, 1), (0.5, 0.0), 1, _fixed_embed({"far": far}),
                           model.min_similarity, cold_start_tier=0)
    cold = bottom.decide("far", tiers)
    assert cold.reason is RouteReason.COLD_START and (cold.start, cold.tier) == (0, "small")


def test_artifact_for_other_models_is_a_typed_error(tmp_path: Path) -> None:
    x, labels = _clusters(40)
    model = train_knn(_data(labels), embeddings=x)
    with pytest.raises(RouterArtifactError, match="knows nothing of tier"):
        columns_for(model, (RouteTier("t", "a"), RouteTier("u", "gpt-9")), "art")
    folder = model.save(tmp_path / "art")
    (folder / "weights.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(RouterArtifactError, match="tampered or corrupted"):
        load_router_model(folder)
    with pytest.raises(RouterArtifactError, match="not a directory"):
        load_router_model(tmp_path / "nothing")


def test_training_data_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RoutingDataError, match="gpt-9 not in the data"):
        correctness_data(TOPICS, ["cheap-model", "gpt-9"])
    blank = tmp_path / "blank.csv"
    text = TOPICS.read_text().replace("Question: What is 7 plus 5?\\nAnswer:", " ")
    blank.write_text(text)
    with pytest.raises(RoutingDataError, match=r"blank.csv, row 1: empty query"):
        correctness_data(blank)
    same = CorrectnessData("same.csv", ("a", "b"), ("x", "y"), np.ones((2, 2), np.float32), None)
    with pytest.raises(RoutingDataError, match="same.csv: every label is the same"):
        train_knn(same, embeddings=np.eye(2, 384, dtype=np.float32))
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text(json.dumps({"prompt": "hi", "model_a": "a", "model_b": "b", "winner": "c"}) + "\n")
    with pytest.raises(RoutingDataError, match="row 1: winner must be"):
        preference_data(prefs)
    prefs.write_text('{"prompt": "hi"}\n')
    with pytest.raises(RoutingDataError, match="row 1: not a preference record"):
        preference_data(prefs)


# --- the causal-LLM grader -------------------------------------------------------------------------


@pytest.mark.parametrize("reply,grade", [
    ("3", 3), ("Difficulty: 4/5", 4), ("I'd say 2.", 2), ("  5\n", 5), ("10", None),
    ("2.5", None), ("hard", None), ("", None), ("0 then 1", 1),
])
def test_grade_parsing(reply: str, grade: int | None) -> None:
    assert parse_grade(reply, 5) == grade


@pytest.mark.anyio
async def test_causal_router_maps_grades_and_falls_back_on_nonsense() -> None:
    replies = iter(["Difficulty: 1", "5", "no idea"])

    async def ask(turns):  # type: ignore[no-untyped-def]
        assert "{query}" not in turns[0].content and "Paris" in turns[0].content
        return Asked(next(replies), Usage(1, 10, 2, 0.001))

    router = CausalLLMRouter((0, 0, 1, 2, 2), default=2)
    ctx = RouteContext("Capital of France? Paris?", TIERS, ask=ask)
    easy, hard, bad = [await router.route(ctx) for _ in range(3)]
    assert (easy.start, easy.reason, easy.cost) == (0, RouteReason.PREDICTED, 0.001)
    assert hard.start == 2
    assert (bad.start, bad.reason) == (2, RouteReason.FAILED) and "unparseable" in (bad.detail or "")
    no_grader = await router.route(RouteContext("x", TIERS))
    assert no_grader.reason is RouteReason.FAILED


# --- the engine: modes, rules, a trained router on replay data -------------------------------------


def _policy(tmp_path: Path, routing: str, cheap_estimator: str = "") -> Path:
    body = textwrap.dedent(f"""\
        feature: routed
        tiers:
          - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: {TOPICS}}}{cheap_estimator}}}
          - {{name: mid, model: mid-model, provider: {{kind: replay, data: {TOPICS}}}}}
          - {{name: dear, model: dear-model, provider: {{kind: replay, data: {TOPICS}}}}}
        """)
    path = tmp_path / "routed.yaml"
    path.write_text(body + textwrap.dedent(routing))
    return path


RULES = """\
    routing:
      mode: {mode}
      router:
        kind: rules
        rules:
          - {{name: history, start: mid, keywords: [emperor, dynasty, revolution]}}
          - {{name: vip, start: dear, metadata: {{plan: enterprise}}}}
          - {{name: long, start: dear, min_chars: 500}}
        default_tier: cheap
    """


def _rules_policy(tmp_path: Path, mode: str) -> Path:
    return _policy(tmp_path, RULES.format(mode=mode))


@pytest.mark.anyio
async def test_rules_pick_the_start_tier_and_the_result_says_why(tmp_path: Path) -> None:
    async with Cascade.from_yaml(_rules_policy(tmp_path, "both")) as engine:
        history = await engine.run("Question: Who was the first emperor of Rome?\nAnswer:")
        assert history.route is not None and history.route.reason is RouteReason.RULE
        assert (history.route.detail, history.tier_name, history.answer) == ("history", "mid", "Augustus")
        assert [a.tier_name for a in history.attempts] == ["mid"]  # cheap was routed past
        vip = await engine.run("Question: What is 7 plus 5?\nAnswer:", metadata={"plan": "enterprise"})
        assert vip.tier_name == "dear" and vip.route is not None and vip.route.detail == "vip"
        plain = await engine.run("Question: What is 7 plus 5?\nAnswer:")
        assert plain.route is not None and plain.route.reason is RouteReason.DEFAULT
        assert plain.tier_name == "cheap" and plain.cost == pytest.approx(0.0001)
        assert plain.to_dict()["route"]["reason"] == "default"


@pytest.mark.anyio
async def test_cascade_mode_ignores_the_router(tmp_path: Path) -> None:
    async with Cascade.from_yaml(_rules_policy(tmp_path, "cascade")) as engine:
        result = await engine.run("Question: Who was the first emperor of Rome?\nAnswer:")
    assert result.route is None and result.tier_name == "cheap"


@pytest.mark.anyio
async def test_a_failing_or_slow_router_falls_back_to_the_default(tmp_path: Path) -> None:
    class Broken:
        name, default = "broken", 2

        async def route(self, ctx: RouteContext):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    class Slow(Broken):
        name = "slow"

        async def route(self, ctx: RouteContext):  # type: ignore[no-untyped-def]
            await anyio.sleep(10)

    from cascade._tier import Routing

    engine = Cascade.from_yaml(_rules_policy(tmp_path, "both"))
    async with engine:
        for router, why in ((Broken(), "RuntimeError: boom"), (Slow(), "no decision within 0.05 s")):
            engine.routing = Routing(router, timeout_s=0.05)  # type: ignore[arg-type]
            result = await engine.run("Question: What is 7 plus 5?\nAnswer:")
            assert result.route is not None and result.route.reason is RouteReason.FAILED
            assert result.route.detail == why and result.tier_name == "dear"


@pytest.mark.models  # loads MiniLM or SmolLM2 (found by scripts/check_markers.sh)
@pytest.mark.anyio
async def test_trained_knn_router_end_to_end_on_replay_data(tmp_path: Path) -> None:
    """MiniLM embeddings of the hand-written fixture: arithmetic starts cheap, history mid."""
    model = await anyio.to_thread.run_sync(lambda: train_knn(correctness_data(TOPICS), k=3, prior=0.0))  # the plain mean
    model.save(tmp_path / "knn")
    routing = """\
        routing:
          mode: {mode}
          router: {{kind: knn, artifact: knn, threshold: 0.6, cold_start: false}}
        """
    for mode, history_tiers in (("route", ["mid"]), ("both", ["mid"])):
        path = _policy(tmp_path, routing.format(mode=mode))
        async with Cascade.from_yaml(path) as engine:
            sums = await engine.run("Question: What is 9 times 3?\nAnswer:")
            history = await engine.run("Question: Which dynasty built the Forbidden City?\nAnswer:")
        assert sums.route is not None and sums.route.reason is RouteReason.PREDICTED
        assert sums.tier_name == "cheap" and sums.answer == "27"
        assert [a.tier_name for a in history.attempts] == history_tiers
        assert history.answer == "Ming" and history.route is not None
        assert history.route.scores[0].p_ok == pytest.approx(0.0)
        assert history.route.scores[1].expected_cost == pytest.approx(0.001)


@pytest.mark.models  # loads MiniLM or SmolLM2 (found by scripts/check_markers.sh)
@pytest.mark.anyio
async def test_cold_start_tier_lets_the_cascade_decide(tmp_path: Path) -> None:
    """A request unlike the training data goes to ``cold_start_tier`` when set (here the
    bottom, so the cascade climbs from there), else to the safe default."""
    question = "Question: Which dynasty built the Forbidden City?\nAnswer:"
    data = correctness_data(TOPICS)
    keep = [i for i, t in enumerate(data.texts) if "Forbidden City" not in t]
    assert len(keep) == len(data.texts) - 1
    unseen = CorrectnessData(data.source, tuple(data.texts[i] for i in keep), data.models,
                             data.labels[keep], None if data.costs is None else data.costs[keep])
    model = await anyio.to_thread.run_sync(lambda: train_knn(unseen, k=3))
    model.save(tmp_path / "knn")
    routing = """\
        routing:
          mode: both
          router: {{kind: knn, artifact: knn, threshold: 0.6, min_similarity: 0.999{extra}}}
        """
    for extra, tier in (("", "dear"), (", cold_start_tier: cheap", "cheap")):
        async with Cascade.from_yaml(_policy(tmp_path, routing.format(extra=extra))) as engine:
            result = await engine.run(question)
        assert result.route is not None and result.route.reason is RouteReason.COLD_START
        assert result.route.tier == tier and result.attempts[0].tier_name == tier
    bad = _policy(tmp_path, routing.format(extra=", cold_start_tier: nowhere"))
    with pytest.raises(PolicyError, match=r"cold_start_tier.*'nowhere' is not a tier"):
        Cascade.from_yaml(bad)


@pytest.mark.anyio
async def test_route_only_accepts_without_the_estimator_and_both_climbs(tmp_path: Path) -> None:
    for mode in ("route", "both"):
        path = _policy(tmp_path, RULES.format(mode=mode),
                       ", estimator: {kind: self_rating, rater: dear}, threshold: 0.99")
        async with Cascade.from_yaml(path) as engine:
            result = await engine.run("Question: What is 7 plus 5?\nAnswer:")
        first = result.attempts[0]
        if mode == "route":
            assert [a.tier_name for a in result.attempts] == ["cheap"]
            assert first.decision is Decision.ACCEPT and first.estimator is None
        else:  # the replayed rater answers "12", not a rating: confidence 0, climb
            assert first.decision is Decision.ESCALATE and len(result.attempts) > 1


def test_policy_errors_name_the_routing_key(tmp_path: Path) -> None:
    bad = _rules_policy(tmp_path, "both")
    bad.write_text(bad.read_text().replace("start: mid", "start: nowhere"))
    with pytest.raises(PolicyError, match=r"routing.*'nowhere' is not a tier"):
        Cascade.from_yaml(bad)
    bad.write_text(_rules_policy(tmp_path, "both").read_text().replace("mode: both", "mode: sometimes"))
    with pytest.raises(PolicyError, match=r"routing.mode \(line 7\)"):
        Cascade.from_yaml(bad)


def test_knn_artifact_of_the_wrong_kind_or_models_fails_at_load(tmp_path: Path) -> None:
    x, labels = _clusters(40)
    train_knn(_data(labels), embeddings=x).save(tmp_path / "art")
    path = _policy(tmp_path, """\
        routing:
          router: {kind: mf, artifact: art}
        """)
    with pytest.raises(RouterArtifactError, match="a knn router artifact, but the policy says kind 'mf'"):
        Cascade.from_yaml(path)
    path.write_text(path.read_text().replace("kind: mf", "kind: knn"))
    with pytest.raises(RouterArtifactError, match="knows nothing of tier"):
        Cascade.from_yaml(path)


# --- real data: calibration to target shares -----------------------------------------------------


@pytest.mark.data
@pytest.mark.models
def test_share_calibration_hits_targets_on_real_data(shared_data: Path) -> None:
    from verifiers import shared_encoder

    arc = shared_data / "routerbench" / "arc_challenge_train.csv"
    models = ["mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview"]
    data = correctness_data(arc, models)
    x = shared_encoder().encode(list(data.texts))
    half = len(data.texts) // 2
    # the plain kNN with similarity weights, so that P(ok) takes many values: a share can only be
    # hit to within the mass of tied predictions (uniform weights give k + 1 values per model,
    # and CV's prior may be m = inf on this half: one value, every query alike); k by CV
    model = train_knn(CorrectnessData(data.source, data.texts[:half], data.models, data.labels[:half],
                                      None), embeddings=x[:half], weighting=KnnWeighting.SIMILARITY, prior=0.0)
    p = model.predict([], x[half:])  # unlabelled queries of the deployment
    for shares in ((0.5, 0.3, 0.2), (0.2, 0.2, 0.6)):
        got = np.bincount(starts(p, share_thresholds(p, shares), 2), minlength=3) / len(p)
        assert np.abs(got - np.array(shares)).max() <= 0.02, (shares, got)
    assert math.isfinite(model.min_similarity)


@pytest.mark.models  # loads MiniLM or SmolLM2 (found by scripts/check_markers.sh)
def test_bert_router_learns_which_model_answers_which_topic(tmp_path: Path) -> None:
    """Real MiniLM fine-tuned briefly: model a answers arithmetic, model b history."""
    from cascade.routing import train_bert

    sums = [f"What is {a} plus {b}?" for a, b in ((2, 3), (7, 8), (11, 4), (9, 9), (6, 1), (5, 12))]
    past = ["Who was the first emperor of Rome?", "When did the Berlin Wall fall?",
            "Which dynasty built the Forbidden City?", "Who led Carthage across the Alps?",
            "When did the French Revolution begin?", "Who was the last tsar of Russia?"]
    texts = tuple(sums + past)
    labels = np.array([[1, 0]] * 6 + [[0, 1]] * 6, dtype=np.float32)
    data = CorrectnessData("topics", texts, ("a", "b"), labels, None)
    model = train_bert(data, epochs=8, batch_size=4, lr=1e-4, max_length=32)
    probe = ["What is 14 plus 3?", "Who founded the Mongol empire?"]
    p = model.predict(probe, np.zeros((2, 384), np.float32))
    assert p[0, 0] > p[0, 1] and p[1, 1] > p[1, 0], p
    reloaded = load_router_model(model.save(tmp_path / "bert"))
    assert np.allclose(reloaded.predict(probe, np.zeros((2, 384), np.float32)), p, atol=1e-5)
