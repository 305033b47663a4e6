"""Trained verifiers on synthetic data where correctness is learnable from the text; safe
artifacts (round trip, tampering, corruption) and bad training data."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from verifiers import (
    ArtifactError,
    Candidate,
    EstimateContext,
    Example,
    TrainingDataError,
    Turn,
    auroc,
    conversation_text,
    load_verifier,
    train_cross_encoder,
    train_sklearn_verifier,
)

pytestmark = [pytest.mark.models]
RIGHT = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius.", "Two plus two is four.",
         "The Earth orbits the Sun.", "Shakespeare wrote Hamlet."]
WRONG = ["I am not sure, maybe it is a banana.", "Sorry, I cannot answer that question.",
         "Purple elephants compute the answer.", "The moon is made of cheese, probably.",
         "Error: the question is unclear to me."]


def synthetic(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = rng.random() < 0.5
        answer = rng.choice(RIGHT if ok else WRONG) + f" ({i})"
        out.append(Example(f"Question number {i}: tell me a fact.", answer, ok))
    return out


@pytest.fixture(scope="module")
def sklearn_verifier():
    return train_sklearn_verifier(synthetic(80, 0))


def test_sklearn_verifier_learns_and_round_trips(sklearn_verifier, tmp_path: Path) -> None:
    test = synthetic(60, 1)
    predicted = sklearn_verifier.predict([e.query for e in test], [e.answer for e in test])
    assert auroc(predicted, [e.correct for e in test]) > 0.9
    folder = sklearn_verifier.save(tmp_path / "v")
    loaded = load_verifier(folder)
    again = loaded.predict([e.query for e in test], [e.answer for e in test])
    assert np.allclose(predicted, again, atol=1e-6)
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".joblib", ".bin", ".pt")]


def test_tampered_corrupt_and_missing_artifacts_are_refused(sklearn_verifier, tmp_path: Path) -> None:
    folder = sklearn_verifier.save(tmp_path / "v")
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="weights.safetensors.*tampered or corrupted"):
        load_verifier(folder)
    folder = sklearn_verifier.save(tmp_path / "w")
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="meta.json"):
        load_verifier(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="missing manifest"):
        load_verifier(folder)
    with pytest.raises(ArtifactError, match="not a directory"):
        load_verifier(tmp_path / "nowhere")


def test_corrupt_safetensors_with_a_matching_hash_is_still_refused(sklearn_verifier, tmp_path: Path) -> None:
    import hashlib
    import json

    folder = sklearn_verifier.save(tmp_path / "v")
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])  # truncated, and re-hashed by an attacker
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["weights.safetensors"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unreadable safetensors"):
        load_verifier(folder)


def test_training_data_without_both_labels_is_a_typed_error() -> None:
    only_right = [Example("q", "a", True), Example("q2", "b", True)]
    with pytest.raises(TrainingDataError, match="no negative labels"):
        train_sklearn_verifier(only_right)
    with pytest.raises(TrainingDataError, match="no positive labels"):
        train_sklearn_verifier([Example("q", "a", False)])
    with pytest.raises(TrainingDataError, match="no training examples"):
        train_sklearn_verifier([])


def test_cross_encoder_trains_a_few_steps_and_round_trips(tmp_path: Path) -> None:
    examples = synthetic(32, 2)
    verifier = train_cross_encoder(examples, max_length=64, limit_steps=4, batch_size=8)
    queries, answers = [e.query for e in examples], [e.answer for e in examples]
    before = verifier.predict(queries, answers)
    loaded = load_verifier(verifier.save(tmp_path / "ce"))
    assert np.allclose(before, loaded.predict(queries, answers), atol=1e-5)
    assert ((before >= 0) & (before <= 1)).all()


@pytest.mark.anyio
async def test_estimate_runs_off_the_loop_and_gives_a_probability(sklearn_verifier, monkeypatch) -> None:
    import threading

    threads: list[int] = []
    original = type(sklearn_verifier).predict_features

    def recording(self, x):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        return original(self, x)

    monkeypatch.setattr(type(sklearn_verifier), "predict_features", recording)
    ctx = EstimateContext((Turn("user", "Question: tell me a fact."),), Candidate("Two plus two is four."))
    estimate = await sklearn_verifier.estimate(ctx)
    assert 0.0 <= estimate.confidence <= 1.0 and estimate.details["kind"] == "verifier-sklearn"
    assert threads and threading.get_ident() not in threads  # scored in a worker thread
    direct = sklearn_verifier.predict(["Question: tell me a fact."], ["Two plus two is four."])
    assert estimate.confidence == pytest.approx(float(direct[0]))


@pytest.mark.parametrize(("turns", "limit", "expected"), [
    ([("user", "hi")], 100, "hi"),
    ([("user", "a" * 10)], 4, "aaaa"),
    ([("system", "be nice"), ("user", "q1"), ("assistant", "a1"), ("user", "q2")], 100,
     "system: be nice\nuser: q1\nassistant: a1\nq2"),
    ([("user", "q1"), ("assistant", "a long answer"), ("user", "q2")], 30, "assistant: a long answer\nq2"),
    ([("user", "q1"), ("assistant", "x" * 50), ("user", "q2")], 20, "q2"),
    ([], 10, ""),
])
def test_conversation_text_truncation(turns, limit, expected) -> None:
    assert conversation_text(turns, limit) == expected


def _rewrite_meta(folder: Path, **changes: object) -> None:
    """Edit meta.json and re-hash it in the manifest (what an older release would have saved)."""
    import hashlib
    import json

    meta = json.loads((folder / "meta.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (folder / "meta.json").write_text(json.dumps(meta))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["meta.json"] = hashlib.sha256((folder / "meta.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_query_tail_is_the_routers_text_and_is_kept_in_the_artifact(sklearn_verifier, tmp_path: Path) -> None:
    from cascade.routing._train import ROUTER_MAX_CHARS
    from verifiers._trained import LEGACY_QUERY_TAIL, QUERY_TAIL

    assert QUERY_TAIL == ROUTER_MAX_CHARS  # one text per prompt for the bench's shared encoder cache
    seen: list[str] = []

    class Recording:
        def encode(self, texts, batch_size: int = 32, max_length: int = 256) -> np.ndarray:
            seen.extend(texts)
            return np.zeros((len(texts), 384), dtype=np.float32)

    long_query = "".join(f"{i % 10}" for i in range(1500))
    folder = sklearn_verifier.save(tmp_path / "v")
    loaded = load_verifier(folder)
    assert loaded.query_tail == QUERY_TAIL
    object.__setattr__(loaded, "encoder", Recording())
    loaded.features([long_query], ["an answer"])
    assert seen[0] == long_query[-QUERY_TAIL:]

    _rewrite_meta(folder, query_tail=None)  # saved before the tail was recorded: it read 1000
    legacy = load_verifier(folder)
    assert legacy.query_tail == LEGACY_QUERY_TAIL
    object.__setattr__(legacy, "encoder", Recording())
    seen.clear()
    legacy.features([long_query], ["an answer"])
    assert seen[0] == long_query[-LEGACY_QUERY_TAIL:]

    for bad in (0, -5, "500", True, 2.5):
        _rewrite_meta(folder, query_tail=bad)
        with pytest.raises(ArtifactError, match="query_tail must be a positive integer"):
            load_verifier(folder)
