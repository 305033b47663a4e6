"""The static encoder distilled from MiniLM (verifiers.StaticEncoder) and kNN / MF routers on it:
paraphrases rank above unrelated texts, artifacts round-trip and refuse tampering, a router
trained on it finds the known best model, always embeds with its own table, and the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import anyio
import numpy as np
import pytest
from tokenizers import Tokenizer
from typer.testing import CliRunner

from cascade import Cascade
from cascade.cli import app
from cascade.errors import RouterArtifactError
from cascade.routing import (
    CorrectnessData,
    LearnedRouter,
    RouteReason,
    RouterEncoder,
    RouteTier,
    correctness_data,
    load_router_model,
    router_embed,
    router_text,
    train_knn,
    train_mf,
)
from verifiers import ArtifactError, StaticEncoder, distil_static, load_static, shared_encoder
from verifiers._artifacts import save_artifact

# every test uses the module fixture that distils the static encoder from MiniLM
pytestmark = pytest.mark.models
FIXTURE = Path(__file__).parent / "fixtures" / "routing_routerbench.csv"
PARAPHRASES = (
    ("How do I bake bread at home?", "What is a good recipe for homemade bread?"),
    ("Who won the football match last night?", "Which team won yesterday's soccer game?"),
    ("The stock market fell sharply today.", "Share prices dropped a lot this afternoon."),
)
PROBES = {  # unseen questions: arithmetic is the cheap model's, history needs the mid one
    "Question: What is 4 plus 9?\nAnswer:": 0,
    "Question: What is 7 times 8?\nAnswer:": 0,
    "Question: Which emperor founded the Mongol empire?\nAnswer:": 1,
    "Question: In which year did the Roman Republic fall?\nAnswer:": 1,
}
runner = CliRunner()


@pytest.fixture(scope="module")
def static() -> StaticEncoder:
    """Distilled over the tokens of the texts used here only (the full vocabulary takes a
    minute or two)."""
    texts = [t for pair in PARAPHRASES for t in pair] + list(PROBES)
    texts += list(correctness_data(FIXTURE).texts)
    tokenizer = Tokenizer.from_file(str(shared_encoder().path / "tokenizer.json"))
    tokens = sorted({i for t in texts for i in tokenizer.encode(t, add_special_tokens=False).ids})
    return distil_static(tokens=tokens, dims=64)


def test_paraphrases_rank_above_unrelated_texts(static: StaticEncoder) -> None:
    texts = [t for pair in PARAPHRASES for t in pair]
    x = static.encode(texts)
    assert x.shape == (6, 64) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sims = x @ x.T
    for i in range(6):
        partner = i ^ 1
        others = [j for j in range(6) if j not in (i, partner)]
        assert sims[i, partner] > sims[i, others].max(), (texts[i], sims[i])
    assert not static.encode([""]).any()  # no tokens: the zero vector, not NaN


def test_save_load_round_trip_and_tampering(static: StaticEncoder, tmp_path: Path) -> None:
    folder = static.save(tmp_path / "static")
    loaded = load_static(folder)
    texts = list(PROBES)
    assert np.array_equal(loaded.encode(texts), static.encode(texts))
    assert loaded.meta["output"] == "token" and loaded.meta["dims"] == 64
    tokenizer = folder / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    with pytest.raises(ArtifactError, match="tokenizer.json does not match its sha256"):
        load_static(folder)


def _data() -> CorrectnessData:
    return correctness_data(FIXTURE, ["cheap-model", "mid-model"])


@pytest.mark.parametrize("kind", ["knn", "mf"])
def test_static_router_picks_the_known_best_model(kind: str, static: StaticEncoder,
                                                  tmp_path: Path) -> None:
    model = (train_knn(_data(), k=3, static=static) if kind == "knn"
             else train_mf(_data(), static=static, epochs=300, lr=0.02))
    assert model.header.encoder is RouterEncoder.STATIC and model.index.embeddings.shape == (12, 64)
    texts = [router_text(t) for t in PROBES]
    p = model.predict(texts, static.encode(texts))
    # the cheap model is right exactly where it is predicted likelier to be than on history
    cheap_ok = p[:, 0]
    assert min(cheap_ok[[0, 1]]) > max(cheap_ok[[2, 3]]), cheap_ok
    reloaded = load_router_model(model.save(tmp_path / kind))
    assert reloaded.static is not None and reloaded.header.encoder is RouterEncoder.STATIC  # type: ignore[attr-defined]
    assert np.allclose(reloaded.predict(texts, reloaded.static.encode(texts)), p, atol=2e-3)


def test_a_static_router_cannot_be_queried_with_minilm(static: StaticEncoder, tmp_path: Path) -> None:
    folder = train_knn(_data(), k=3, static=static).save(tmp_path / "knn")
    model = load_router_model(folder)
    tiers = (RouteTier("cheap", "cheap-model"), RouteTier("mid", "mid-model"))
    router = LearnedRouter(model, (0, 1), (0.6, 0.0), 1, shared_encoder().encode, None)
    assert router.embed.__self__ is model.static  # type: ignore[attr-defined]  # its own table
    assert router_embed(model).__self__ is model.static  # type: ignore[attr-defined]
    assert router.inline  # tiny CPU work: decided on the event loop
    assert router.decide(router_text("Question: What is 4 plus 9?\nAnswer:"), tiers).start == 0
    # and the other way round: a MiniLM-trained router refuses the static encoder
    x = np.eye(12, 384, dtype=np.float32)
    minilm = train_knn(_data(), k=3, embeddings=x)
    with pytest.raises(RouterArtifactError, match="trained on MiniLM embeddings"):
        LearnedRouter(minilm, (0, 1), (0.6, 0.0), 1, static.encode, None)
    with pytest.raises(RouterArtifactError, match="384-dimensional"):
        LearnedRouter(minilm, (0, 1), (0.6, 0.0), 1, lambda t: np.zeros((len(t), 64)), None).decide("x", tiers)


def test_artifact_encoder_field_is_checked(static: StaticEncoder, tmp_path: Path) -> None:
    folder = train_knn(_data(), k=3, static=static).save(tmp_path / "knn")
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {"embeddings": load_router_model(folder).index.embeddings.astype(np.float16),
              "labels": _data().labels.astype(np.uint8)}
    # the table is hash-checked through the router's manifest too
    (folder / "static" / "weights.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(RouterArtifactError, match="tampered or corrupted"):
        load_router_model(folder)
    # a static-width index that claims MiniLM (e.g. a hand-edited, re-hashed meta.json)
    save_artifact(tmp_path / "claims-minilm", "router-knn", {**meta, "encoder": "minilm"}, arrays)
    with pytest.raises(RouterArtifactError, match="has shape"):
        load_router_model(tmp_path / "claims-minilm")
    # recorded static, table missing
    save_artifact(tmp_path / "no-table", "router-knn", meta, arrays)
    with pytest.raises(RouterArtifactError, match="static encoder"):
        load_router_model(tmp_path / "no-table")
    save_artifact(tmp_path / "odd", "router-knn", {**meta, "encoder": "glove"}, arrays)
    with pytest.raises(RouterArtifactError, match="unknown `encoder` 'glove'"):
        load_router_model(tmp_path / "odd")
    # artifacts from before the field mean MiniLM
    old = {k: v for k, v in meta.items() if k != "encoder"}
    x = np.eye(12, 384, dtype=np.float16)
    save_artifact(tmp_path / "old", "router-knn", old, {**arrays, "embeddings": x})
    legacy = load_router_model(tmp_path / "old")
    assert legacy.header.encoder is RouterEncoder.MINILM and legacy.static is None  # type: ignore[attr-defined]


def test_train_router_cli_with_the_static_encoder(static: StaticEncoder, tmp_path: Path) -> None:
    table = static.save(tmp_path / "table")
    trained = runner.invoke(app, ["train-router", "--kind", "knn", "--encoder", "static",
                                  "--static-table", str(table), "--data", str(FIXTURE),
                                  "--out", str(tmp_path / "knn"), "--k", "3", "--test", str(FIXTURE)])
    assert trained.exit_code == 0, trained.output
    assert "knn router for 3 models on 12 queries" in trained.output
    assert "static embeddings" in trained.output and "AUROC" in trained.output
    assert load_router_model(tmp_path / "knn").static is not None
    bert = runner.invoke(app, ["train-router", "--kind", "bert", "--encoder", "static",
                               "--static-table", str(table), "--data", str(FIXTURE),
                               "--out", str(tmp_path / "bert")])
    assert bert.exit_code == 2 and "knn and mf" in bert.output
    stray = runner.invoke(app, ["train-router", "--kind", "knn", "--static-table", str(table),
                                "--data", str(FIXTURE), "--out", str(tmp_path / "x")])
    assert stray.exit_code == 2 and "--encoder static" in stray.output


@pytest.mark.anyio
async def test_engine_routes_with_the_artifacts_static_encoder(static: StaticEncoder,
                                                               tmp_path: Path) -> None:
    model = await anyio.to_thread.run_sync(lambda: train_knn(correctness_data(FIXTURE), k=3, static=static))
    model.save(tmp_path / "knn")
    path = tmp_path / "routed.yaml"
    path.write_text(textwrap.dedent(f"""\
        tiers:
          - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: {FIXTURE}}}}}
          - {{name: mid, model: mid-model, provider: {{kind: replay, data: {FIXTURE}}}}}
          - {{name: dear, model: dear-model, provider: {{kind: replay, data: {FIXTURE}}}}}
        routing:
          mode: route
          router: {{kind: knn, artifact: knn, threshold: 0.6, cold_start: false}}
        """))
    async with Cascade.from_yaml(path) as engine:
        assert engine.routing is not None
        router = engine.routing.router
        assert isinstance(router, LearnedRouter) and router.embed.__self__ is router.model.static  # type: ignore[attr-defined]
        sums = await engine.run("Question: What is 9 times 3?\nAnswer:")
        history = await engine.run("Question: Which dynasty built the Forbidden City?\nAnswer:")
    assert sums.route is not None and sums.route.reason is RouteReason.PREDICTED
    assert sums.tier_name == "cheap" and sums.answer == "27"
    assert history.tier_name == "mid" and history.answer == "Ming"
