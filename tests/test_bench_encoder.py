"""The bench's encoder cache: in one run every distinct text (query, answer tail, router text)
reaches the MiniLM encoder once, in batches, whichever methods and routers read it. Counted
with a fake encoder standing in for MiniLM (no model is loaded)."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from test_bench import write_fixture

import verifiers._encoder as encoder_module
from cascade.bench._bench import run_suite
from cascade.bench._cli import csv_suite
from cascade.bench._methods import methods_for
from cascade.bench._replay import bench_encoder
from verifiers._encoder import DIMENSIONS

pytestmark = pytest.mark.anyio


class CountingEncoder:
    """Deterministic unit vectors per text; remembers every call and every text it was given."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], batch_size: int = 32, max_length: int = 256) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIMENSIONS) for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), DIMENSIONS)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def texts(self) -> Counter[str]:
        return Counter(t for call in self.calls for t in call)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingEncoder]:
    fake = CountingEncoder()
    monkeypatch.setattr(encoder_module, "shared_encoder", lambda: fake)
    bench_encoder.cache_clear()  # the bench's per-process cache wraps the fake from here on
    yield fake
    bench_encoder.cache_clear()


async def test_each_text_is_encoded_once_across_the_verifier_and_a_router(
        tmp_path: Path, counting: CountingEncoder) -> None:
    data = tmp_path / "toy.csv"
    write_fixture(data, rows=40)
    suite = csv_suite(data, None, tmp_path)
    report = await run_suite(suite, tmp_path, methods_for(suite, ["verifier"]), bootstrap_rounds=0,
                             routers=["knn"])
    assert {"verifier", "knn"} <= report.ran  # every reader of embeddings ran
    seen = counting.texts()
    assert seen and max(seen.values()) == 1, [t for t, n in seen.items() if n > 1]
    prompts = {f"Question {i}: what is 2+2?" for i in range(40)}
    assert prompts <= seen.keys()  # train and test queries: the verifier's and the routers' text
    # answers of the tiers the verifier judges (the two cheaper ones); the dearest tier closes
    # every chain unjudged, so its answers are never encoded for their own sake
    assert {"sure: 4", "maybe: 5", "6"} <= seen.keys()
    assert seen.keys() <= prompts | {"sure: 4", "maybe: 5", "4", "6"}
    # in batches: per judged tier at most one call per side for queries and one for answers
    assert len(counting.calls) <= 2 * 2 * 2


def test_the_cache_passes_only_new_texts_in_length_order(counting: CountingEncoder) -> None:
    cache = bench_encoder()
    first = cache.encode(["ccc", "a", "bb", "a"])
    second = cache.encode(["bb", "dddd", "a"])
    assert counting.calls == [["a", "bb", "ccc"], ["dddd"]]  # sorted by length: little padding
    assert np.array_equal(first[1], first[3]) and np.array_equal(first[2], second[0])
    assert np.array_equal(second[1], counting.encode(["dddd"])[0])


def test_bench_routers_decide_from_memoised_rows_without_re_encoding() -> None:
    """The bench's router memo: predictions and nearest similarities as the model gives them,
    computed once per query; a static router's encoder is never called per engine run."""
    from cascade.bench._routing import Memo
    from cascade.routing import LearnedRouter, NeighbourIndex, RouterKind
    from cascade.routing._types import RouteTier

    rng = np.random.default_rng(0)
    keys = rng.normal(size=(30, 8)).astype(np.float32)
    index = NeighbourIndex(keys / np.linalg.norm(keys, axis=1, keepdims=True))
    texts = ("one", "two")
    queries = rng.normal(size=(2, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    class Static:
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise AssertionError("re-encoded during an engine run")

    class Model:
        kind, models, min_similarity, expected_cost = RouterKind.KNN, ("a", "b"), -1.0, (1.0, 2.0)
        static = Static()

        def __init__(self) -> None:
            self.index = index

    memo = Memo.of(Model(), texts, np.array([[0.9, 0.8], [0.2, 0.9]]), queries)  # type: ignore[arg-type]
    assert memo.static is None and memo.min_similarity == -1.0

    class Unasked:
        embeddings = index.embeddings

        def nearest(self, queries: np.ndarray) -> np.ndarray:
            raise AssertionError("a test query's similarity was not computed up front")

    memo.index.base = Unasked()  # type: ignore[assignment]
    first = memo.index.nearest(queries[:1])
    assert first.shape == (1,) and np.isclose(first[0], index.nearest(queries[:1])[0], atol=1e-6)
    assert memo.index.nearest(queries[:1]) is first
    assert np.isclose(memo.index.nearest(queries[1:])[0], index.nearest(queries[1:])[0], atol=1e-6)
    lookup = dict(zip(texts, queries))
    router = LearnedRouter(memo, (0, 1), (0.5, 0.0), 1,  # type: ignore[arg-type]
                           lambda ts: np.stack([lookup[t] for t in ts]), memo.min_similarity, inline=True)
    tiers = [RouteTier("a", "a"), RouteTier("b", "b")]
    assert router.decide("one", tiers).start == 0 and router.decide("two", tiers).start == 1


def _long_prompts(path: Path, rows: int = 24) -> list[str]:
    """The fixture with prompts of 800–1,600 characters (a few-shot context before the question)."""
    import csv

    with path.open() as handle:
        table = list(csv.reader(handle))
    prompts = []
    for i, row in enumerate(table[1:rows + 1]):
        context = f"Example {i}. " + "Some worked example text. " * (30 + 2 * i)
        prompts.append(context + f"Question {i}: what is 2+2?")
        row[2] = repr([prompts[-1]])
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(table[:rows + 1])
    return prompts


async def test_a_long_prompt_is_encoded_once_for_the_verifier_and_the_routers(
        tmp_path: Path, counting: CountingEncoder) -> None:
    from cascade.routing._train import router_text

    data = tmp_path / "toy.csv"
    write_fixture(data, rows=24)
    prompts = _long_prompts(data)
    assert min(len(p) for p in prompts) > 800
    suite = csv_suite(data, None, tmp_path)
    report = await run_suite(suite, tmp_path, methods_for(suite, ["verifier"]), bootstrap_rounds=0,
                             routers=["knn"])
    assert {"verifier", "knn"} <= report.ran
    seen = counting.texts()
    assert max(seen.values()) == 1
    tails = {router_text(p) for p in prompts}
    assert tails <= seen.keys()  # the routers' text, which the verifier reads too
    assert not [t for t in seen if len(t) > 500]  # no longer tail encoded for the verifier alone


def test_batches_are_the_same_in_every_process() -> None:
    """The cache encodes its new texts by length, ties by text: a set's order changes with the
    process's hash seed, and a text's embedding moves by ~1e-7 with its batch's make-up, which
    flipped one borderline verifier decision between two runs of the same bench command."""
    from verifiers import CachedEncoder

    inner = CountingEncoder()
    texts = [f"q{i:02d}" for i in range(40)][::-1] + ["a longer one", "z", "q07"]
    CachedEncoder(inner).encode(texts)  # type: ignore[arg-type]
    assert inner.calls == [sorted(set(texts), key=lambda t: (len(t), t))]
