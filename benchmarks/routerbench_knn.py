"""RouterBench's KNN router, re-implemented as ``../shared/BASELINES.md`` runs it: the
reference that "routing alone gains at least as much over random mixing as RouterBench's
KNN" is checked against on files nobody tuned to.

    python benchmarks/routerbench_knn.py check DATA          # ARC / Winogrande / MBPP vs BASELINES
    python benchmarks/routerbench_knn.py run --train TRAIN --test TEST [--c-max X] [--json OUT]
    python benchmarks/routerbench_knn.py run --halves FILE [...]   # one file, halves split (seed 0)
    ... --ours knn --ours mf --ours knn-mf   # also our routers' scores under the same rules

Two protocols, both printed (``gain over random``): **the reference's** (RouterBench's and
BASELINES': one routing per willingness-to-pay value, the AIQ of the hull of all 32 *test*
points) and **the bench's** (``cascade bench``: the values on the hull of their *train* points,
from out-of-fold scores, at most 12, each measured on test). With ``--ours KIND`` our router of
that kind (``cascade.routing``, trained as ``cascade train-router`` trains it: its own texts,
MiniLM and CV-chosen settings; out-of-fold scores cross-fitted with those settings) is put
through the same rules and protocols, so the only difference left is the quality predictor;
for each rule and protocol it also prints our AIQ minus the reference's with a **paired
bootstrap** 95 % interval (1,000 resamples of the test queries, both routers' routings measured
on each; settings fixed), so "at least as much" can be read against the noise.

What it does (RouterBench, withmartian/routerbench: ``routers/knn_router.py``,
``evaluate_routers.py``, ``utils.WILLINGNESS_TO_PAY``, ``configs/evaluate_routers.yaml``;
re-implemented here, none of their code is copied):

- **scores**: per test query, the unweighted mean quality of each model over the query's
  ``k`` nearest train queries (cosine distance on sentence embeddings);
- **willingness to pay** ``w``: route to ``argmax_m  score_m · w − (completion + prompt price
  per token of m)`` (their ``TOKEN_COSTS``, USD per 10M tokens as written there; no request
  fees for these models), first model on ties; one routing, one (total cost, mean quality)
  point per ``w`` of their 32-value grid; cost = the chosen model's recorded cost;
- **variants**: k ∈ {5, 10, 40}, cosine (their config), chosen by 5-fold CV AIQ on train
  (out-of-fold routing of every train query, AIQ under the largest cost any variant reaches),
  as BASELINES does; refitted on all of train;
- **embeddings**: all-MiniLM-L6-v2 (the local MiniLM, ``max_length`` 256) of the prompt
  (RouterBench's list parts joined) with the prefix every train prompt shares cut off (at a
  whitespace), cached under ``--cache`` as ``.npy`` (no pickles);
- **AIQ**: ``cascade.bench._metrics.aiq`` (the hull extended flat to ``c_max``, divided by
  it), the function every ``cascade bench`` table uses; rows with an empty quality cell for any
  model are left out, as in BASELINES.

Files without recorded costs are costed as ``cascade bench --csv`` costs them
(``cascade.bench._costs``: ⌈characters / 4⌉ prompt tokens, the recorded answer's or
``--output-tokens`` per answer, bundled list prices or ``--price``), so the AIQs here compare
with the bench's on the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cascade.bench._costs import DEFAULT_OUTPUT_TOKENS, Costing, parse_prices, price_models
from cascade.bench._metrics import aiq, hull
from cascade.errors import ReplayDataError
from cascade.providers import ReplayTable, load_table

# RouterBench's willingness-to-pay grid (utils.WILLINGNESS_TO_PAY).
WILLINGNESS_TO_PAY = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.005, 0.01, 0.1, 0.5, 1.0, 1.5,
                      2.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 7500.0,
                      10000.0, 25000.0, 50000.0, 75000.0, 100000.0, 1e6, 1e9)
NEIGHBORS = (5, 10, 40)  # configs/evaluate_routers.yaml
FOLDS = 5
BOOTSTRAP_ROUNDS = 1000
# RouterBench's per-token prices (routers/common.py TOKEN_COSTS): (prompt, completion) per
# 10M tokens as written there; the rule compares them with score · w, so their scale matters.
TOKEN_PRICES_PER_10M = {
    "gpt-3.5-turbo-1106": (1.0, 2.0), "claude-instant-v1": (0.8, 2.4), "claude-v1": (8.0, 24.0),
    "claude-v2": (8.0, 24.0), "gpt-4-1106-preview": (10.0, 30.0), "meta/llama-2-70b-chat": (0.9, 0.9),
    "mistralai/mixtral-8x7b-chat": (0.6, 0.6), "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6),
    "mistralai/mistral-7b-chat": (0.2, 0.2), "zero-one-ai/Yi-34B-Chat": (0.8, 0.8),
    "WizardLM/WizardLM-13B-V1.2": (0.3, 0.3), "meta/code-llama-instruct-34b-chat": (0.776, 0.776),
}
# BASELINES.md: c_max and RouterBench-KNN AIQ per public set.
PUBLISHED = {"arc_challenge": (2.2894, 0.8952), "winograde": (1.3418, 0.7731), "mbpp": (0.8958, 0.6683)}


@dataclass(frozen=True)
class Split:
    models: tuple[str, ...]
    texts: list[str]
    labels: np.ndarray  # (n, models) quality
    cost: np.ndarray  # (n, models) USD per call


def _rows(table: ReplayTable) -> list:
    return [r for r in table.rows if all(r.records[m].correct is not None for m in table.models)]


def read(path: Path, costing: Costing) -> Split:
    """A file as (texts, quality, cost); cost-less files costed as ``cascade bench --csv`` does."""
    table = load_table(path)
    rows = _rows(table)
    labels = np.array([[r.records[m].correct for m in table.models] for r in rows], dtype=float)
    if table.has_costs:
        cost = np.array([[r.records[m].cost for m in table.models] for r in rows], dtype=float)
    else:
        priced = price_models(table.models, costing)
        out_tokens = costing.output_tokens if costing.output_tokens is not None else DEFAULT_OUTPUT_TOKENS

        def one(row, model: str) -> float:
            answer = row.records[model].response
            output = out_tokens if answer is None else math.ceil(len(answer) / 4)
            return priced[model].price.cost(math.ceil(len(row.prompt) / 4), output)

        cost = np.array([[one(r, m) for m in table.models] for r in rows], dtype=float)
    return Split(table.models, [r.prompt for r in rows], labels, cost)


def halves(split: Split, seed: int = 0) -> tuple[Split, Split]:
    """BASELINES' rule: ``np.random.RandomState(seed).permutation(n)``, first ``n // 2`` train."""
    order = np.random.RandomState(seed).permutation(len(split.texts))
    parts = order[: len(order) // 2], order[len(order) // 2:]
    return tuple(Split(split.models, [split.texts[i] for i in p], split.labels[p], split.cost[p])
                 for p in parts)  # type: ignore[return-value]


def shared_prefix(texts: list[str]) -> str:
    """The prefix every text shares, cut back to a whitespace (never into a word)."""
    prefix = os.path.commonprefix(texts)
    if not prefix or all(t == prefix for t in texts):
        return ""
    cut = max(prefix.rfind(c) for c in " \n\t")
    return prefix[: cut + 1] if cut >= 0 else ""


def embed(texts: list[str], cache: Path | None) -> np.ndarray:
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    file = None if cache is None else cache / f"minilm-{key}.npy"
    if file is not None and file.is_file():
        return np.load(file, allow_pickle=False)
    from verifiers import CachedEncoder

    x = CachedEncoder().encode(texts, batch_size=32, max_length=256).astype(np.float32)
    if file is not None:
        cache.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        np.save(file, x, allow_pickle=False)
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_scores(train_x: np.ndarray, train_labels: np.ndarray, query_x: np.ndarray, k: int) -> np.ndarray:
    """Per query, the mean quality of each model over its k nearest train rows (cosine)."""
    k = min(k, len(train_x))
    sims = _unit(query_x) @ _unit(train_x).T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return train_labels[top].mean(axis=1)


def penalties(models: tuple[str, ...], costing: Costing) -> np.ndarray:
    """completion + prompt price per token (RouterBench's TOKEN_COSTS; other models from the
    price their calls are costed at, on the same per-10M scale)."""
    out = []
    unknown = [m for m in models if m not in TOKEN_PRICES_PER_10M]
    priced = price_models(unknown, costing) if unknown else {}
    for m in models:
        if m in TOKEN_PRICES_PER_10M:
            prompt, completion = TOKEN_PRICES_PER_10M[m]
        else:
            prompt, completion = priced[m].price.input_per_1m, priced[m].price.output_per_1m
        out.append((prompt + completion) / 10_000_000)
    return np.array(out)


def route(scores: np.ndarray, penalty: np.ndarray, w: float) -> np.ndarray:
    return np.argmax(scores * w - penalty[None, :], axis=1)  # first model on ties (idxmax)


@dataclass(frozen=True)
class Rule:
    """A routing rule swept over its grid: ``route(scores, w)`` → the chosen model per row."""
    name: str
    grid: tuple[float, ...]
    route: Callable[[np.ndarray, float], np.ndarray]


def reference_rule(penalty: np.ndarray) -> Rule:
    return Rule("RouterBench's rule", WILLINGNESS_TO_PAY, lambda s, w: route(s, penalty, w))


def bench_rule(train: Split) -> Rule:
    """``cascade bench``'s routing-only rule: argmax P(ok) − λ · (mean train cost relative to the
    dearest model's), λ ∈ {0} ∪ 31 values from 1e-3 to 1e3 (``cascade.bench._routing``)."""
    from cascade.routing import utility_starts

    mean = list(train.cost.mean(axis=0))
    return Rule("the bench's rule", BENCH_GRID, lambda s, w: utility_starts(s, mean, w))


BENCH_GRID = (0.0, *(float(w) for w in np.geomspace(1e-3, 1e3, 31)))


def choices(scores: np.ndarray, rule: Rule) -> list[np.ndarray]:
    """The chosen model per row, one array per value of the rule's grid."""
    return [rule.route(scores, w) for w in rule.grid]


def measure(chosen: list[np.ndarray], labels: np.ndarray, cost: np.ndarray,
            rows: np.ndarray | None = None) -> list[tuple[float, float]]:
    """One (total cost, mean quality) point per routing, over ``rows`` (default: all)."""
    rows = np.arange(len(labels)) if rows is None else rows
    return [(float(cost[rows, c[rows]].sum()), float(labels[rows, c[rows]].mean())) for c in chosen]


def points(scores: np.ndarray, rule: Rule, labels: np.ndarray, cost: np.ndarray) -> list[tuple[float, float]]:
    """One (total cost, mean quality) point per value of the rule's grid."""
    return measure(choices(scores, rule), labels, cost)


def paired_difference(ours: list[np.ndarray], reference: list[np.ndarray], test: Split, c_max: float,
                      rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> dict[str, float]:
    """Our AIQ minus the reference's on the same test queries, with a paired bootstrap 95 %
    interval: each round resamples the queries once and measures both routers' routings (their
    settings fixed) on that resample. Random mixing is the same for both, so this is also the
    difference of their gains over it."""
    rng = np.random.default_rng(seed)
    n = len(test.labels)
    point = aiq(measure(ours, test.labels, test.cost), c_max) - aiq(measure(reference, test.labels, test.cost), c_max)
    draws = []
    for _ in range(rounds):
        rows = rng.integers(0, n, n)
        draws.append(aiq(measure(ours, test.labels, test.cost, rows), c_max)
                     - aiq(measure(reference, test.labels, test.cost, rows), c_max))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"difference": point, "low": float(low), "high": float(high), "rounds": rounds}


def choose_k(x: np.ndarray, train: Split, rule: Rule) -> tuple[int, dict[int, float], np.ndarray]:
    """k by 5-fold CV AIQ on train (out-of-fold routing, one c_max for every variant); also
    the chosen k's out-of-fold scores (what the train-hull protocol chooses its settings on)."""
    folds = np.random.RandomState(0).permutation(len(x)) % FOLDS
    curves, oof = {}, {}
    for k in NEIGHBORS:
        scores = np.zeros_like(train.labels)
        for f in range(FOLDS):
            held, fit = folds == f, folds != f
            scores[held] = knn_scores(x[fit], train.labels[fit], x[held], k)
        curves[k], oof[k] = points(scores, rule, train.labels, train.cost), scores
    c_max = max(hull(p)[-1][0] for p in curves.values())
    cv = {k: aiq(p, c_max) for k, p in curves.items()}
    best = max(NEIGHBORS, key=lambda k: (cv[k], -k))
    return best, cv, oof[best]


def train_hull_choices(train_scores: np.ndarray, train: Split, test_scores: np.ndarray,
                       rule: Rule, keep: int = 12) -> list[np.ndarray]:
    """The bench's protocol: of the rule's grid values, those on the hull of their train points
    (``train_scores``: out-of-fold), at most ``keep`` spread along it
    (``cascade.bench._sweep.pareto``, as every bench curve is chosen), each routing the test
    queries. The reference protocol instead takes the hull of every grid value's test point."""
    from cascade.bench._sweep import Setting, pareto

    on_train = points(train_scores, rule, train.labels, train.cost)
    kept = pareto([Setting(train.models, (w,), c, q) for w, (c, q) in zip(rule.grid, on_train)], keep)
    return choices(test_scores, Rule(rule.name, tuple(k.thresholds[0] for k in kept), rule.route))


def train_hull_points(train_scores: np.ndarray, train: Split, test_scores: np.ndarray, test: Split,
                      rule: Rule, keep: int = 12) -> list[tuple[float, float]]:
    """``train_hull_choices`` measured on test."""
    return measure(train_hull_choices(train_scores, train, test_scores, rule, keep), test.labels, test.cost)


OURS = ("knn", "mf", "knn-mf")  # RouterKind values: MiniLM routers of cascade.routing, settings chosen by CV


def ours_scores(kind: str, train: Split, test: Split, cache: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """One of our routers trained on train as ``cascade train-router --kind KIND`` trains it
    (its texts, MiniLM, settings chosen by its own CV): P(ok) per test query and model, the
    same router's out-of-fold P(ok) on train (``cross_fitted_priors`` with the chosen settings,
    as ``cascade calibrate`` cross-fits a unified policy's priors) and the settings."""
    from cascade.routing import CorrectnessData, RouterKind, router_text
    from cascade.tuning._unified_data import RouterSettings, cross_fitted_priors, train_router

    train_texts = tuple(router_text(t) for t in train.texts)
    test_texts = [router_text(t) for t in test.texts]
    x_train, x_test = embed(list(train_texts), cache), embed(test_texts, cache)
    data = CorrectnessData("train", train_texts, train.models, train.labels.astype(np.float32), train.cost)
    model = train_router(RouterSettings(RouterKind(kind)), data, x_train)
    chosen = RouterSettings.of(model)
    return model.predict(test_texts, x_test), cross_fitted_priors(chosen, data, x_train, FOLDS), chosen.describe()


def evaluate(train: Split, test: Split, costing: Costing, cache: Path | None,
             c_max: float | None = None, ours: tuple[str, ...] = ()) -> dict[str, object]:
    """RouterBench's KNN on the pair, and each of ``ours``, every one under both rules and both
    protocols: the reference's (the hull of all 32 test points) and the bench's
    (the train hull's settings, from out-of-fold scores, measured on test)."""
    started = time.monotonic()
    prefix = shared_prefix(train.texts)

    def strip(t: str) -> str:
        return t[len(prefix):] if prefix and t.startswith(prefix) else t

    x_train = embed([strip(t) for t in train.texts], cache)
    x_test = embed([strip(t) for t in test.texts], cache)
    reference = reference_rule(penalties(train.models, costing))
    k, cv, oof = choose_k(x_train, train, reference)
    test_scores = knn_scores(x_train, train.labels, x_test, k)
    pts = points(test_scores, reference, test.labels, test.cost)
    singles = [(float(test.cost[:, j].sum()), float(test.labels[:, j].mean())) for j in range(len(train.models))]
    c_max = c_max or max(hull(pts)[-1][0], hull(singles)[-1][0])
    knn, random = aiq(pts, c_max), aiq(singles, c_max)
    rules = (reference, bench_rule(train))

    def routings(train_scores: np.ndarray, scores: np.ndarray) -> dict[tuple[str, str], list[np.ndarray]]:
        """Per (rule, protocol): the test routings whose AIQ that protocol reports."""
        return {**{(rule.name, "test_sweep"): choices(scores, rule) for rule in rules},
                **{(rule.name, "train_hull"): train_hull_choices(train_scores, train, scores, rule) for rule in rules}}

    def gains(routed: dict[tuple[str, str], list[np.ndarray]]) -> dict[str, dict[str, float]]:
        """Gain over random mixing per rule, under both protocols."""
        out: dict[str, dict[str, float]] = {}
        for (rule, protocol), chosen in routed.items():
            out.setdefault(rule, {})[protocol] = aiq(measure(chosen, test.labels, test.cost), c_max) - random
        return out

    theirs = routings(oof, test_scores)
    mine: dict[str, dict[str, object]] = {}
    for kind in ours:
        scores, kind_oof, settings = ours_scores(kind, train, test, cache)
        routed = routings(kind_oof, scores)
        versus = {f"{rule} / {protocol}": paired_difference(chosen, theirs[rule, protocol], test, c_max)
                  for (rule, protocol), chosen in routed.items()}
        mine[kind] = {"settings": settings, "gains": gains(routed), "minus_reference": versus}
    return {"k": k, "cv_aiq": cv, "prefix_chars": len(prefix), "c_max": c_max, "knn_aiq": knn,
            "random_aiq": random, "gain_over_random": knn - random, "points": pts,
            "knn_gains": gains(theirs), "ours": mine,
            "singles": dict(zip(train.models, singles)), "train": len(train.texts), "test": len(test.texts),
            "seconds": time.monotonic() - started}


def check(data: Path, cache: Path | None, ours: tuple[str, ...] = ()) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, (c_max, published) in PUBLISHED.items():
        train = read(data / f"{name}_train.csv", Costing())
        test = read(data / f"{name}_test.csv", Costing())
        found = evaluate(train, test, Costing(), cache, c_max, ours)
        found["published_knn_aiq"] = published
        found["difference"] = float(found["knn_aiq"]) - published  # type: ignore[arg-type]
        print(f"{name}: k={found['k']} KNN AIQ {found['knn_aiq']:.4f} (BASELINES {published:.4f}, "
              f"{found['difference']:+.4f}); random {found['random_aiq']:.4f}; {found['seconds']:.0f} s")
        report(found)
        out[name] = found
    return out


def report(found: dict[str, object]) -> None:
    """Each router's gain over random mixing, per rule and protocol, one line each."""
    rows = [("RouterBench-KNN", f"k={found['k']}", found["knn_gains"])]
    rows += [(f"ours {kind}", mine["settings"], mine["gains"]) for kind, mine in found["ours"].items()]  # type: ignore[attr-defined]
    print("  gain over random mixing — per rule: hull of every grid value on test (the reference's "
          "protocol) / train-hull settings measured on test (the bench's)")
    for name, settings, by_rule in rows:
        cells = "; ".join(f"{rule} {g['test_sweep']:+.4f} / {g['train_hull']:+.4f}" for rule, g in by_rule.items())  # type: ignore[attr-defined]
        print(f"  {name} ({settings}): {cells}")
    for kind, mine in found["ours"].items():  # type: ignore[attr-defined]
        cells = "; ".join(f"{where} {d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
                          for where, d in mine["minus_reference"].items())
        print(f"  ours {kind} − RouterBench-KNN, AIQ (paired bootstrap 95 %, {BOOTSTRAP_ROUNDS} rounds): {cells}")


def _command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, object]:
    if args.command == "check":
        folder = args.data / "routerbench" if (args.data / "routerbench").is_dir() else args.data
        return check(folder, args.cache, tuple(args.ours))
    costing = Costing(parse_prices(args.price), args.output_tokens)
    if args.halves is not None:
        train, test = halves(read(args.halves, costing))
    elif args.train is not None and args.test is not None:
        train, test = read(args.train, costing), read(args.test, costing)
    else:
        parser.error("give --train and --test, or --halves")
    result = evaluate(train, test, costing, args.cache, args.c_max, tuple(args.ours))
    print(f"k={result['k']} (CV AIQ {', '.join(f'{k}: {v:.4f}' for k, v in result['cv_aiq'].items())}); "
          f"test: RouterBench-KNN AIQ {result['knn_aiq']:.4f}, random {result['random_aiq']:.4f}, "
          f"gain {result['gain_over_random']:+.4f} at c_max {result['c_max']:.4f}; {result['seconds']:.0f} s")
    report(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RouterBench's KNN router, re-implemented")
    sub = parser.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="reproduce BASELINES' KNN AIQs on ARC / Winogrande / MBPP")
    chk.add_argument("data", type=Path, help="folder of the RouterBench *_train / *_test CSVs")
    run = sub.add_parser("run", help="a train / test pair, or one file split in halves")
    run.add_argument("--train", type=Path)
    run.add_argument("--test", type=Path)
    run.add_argument("--halves", type=Path)
    run.add_argument("--c-max", type=float, help="compare AIQs under this c_max (default: largest hull cost)")
    run.add_argument("--price", action="append", default=[], help="'MODEL=IN,OUT' for cost-less files")
    run.add_argument("--output-tokens", type=int, help="per answer, for files without answers or costs")
    for p in (chk, run):
        p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "cascade-bench" / "rb-knn")
        p.add_argument("--json", type=Path, help="write the results here")
        p.add_argument("--ours", action="append", default=[], choices=OURS,
                       help="also our router of this kind, under both rules and both protocols (repeatable)")
    args = parser.parse_args(argv)
    try:
        result = _command(args, parser)
    except ReplayDataError as exc:  # a file that cannot be read: its name, row and column, no traceback
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
