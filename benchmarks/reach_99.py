"""How far each public set is from issue 20's "99 % of the best single model's accuracy at
≤ 50 % of its cost", and what it would take.

For each suite: the default unified decision (``--router unified-mf-static``: cross-fitted
router priors on train, quality models fitted on train, the train's non-dominated tiers,
max 3 calls) swept over λ on test — its cost to 99 % of the best single model, as
``cascade bench`` reports it — and the same decision with its quality models **fitted on the
test set itself** (in-sample: what fitting the estimates to the very queries measured gains;
no honest method can do that, though it is not a strict bound, the fit maximising likelihood,
not this cost). For two-tier suites also: the AUROC an
estimator of the cheap tier's correctness needs before routing on it reaches the target
(synthetic scores ``s · (gain) + N(0, 1)`` on the recorded outcomes, 20 draws per ``s``),
beside the AUROC of the router's prior.

    .venv/bin/python benchmarks/reach_99.py [gsm8k mbpp winogrande arc mot-date] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import anyio
import numpy as np

TARGET_SHARE, COST_SHARE = 0.99, 0.50


def cost_to_share(points: Sequence[tuple[float, float]], best_accuracy: float, best_cost: float,
                  share: float = TARGET_SHARE) -> float:
    """The least cost at which the points' hull (mixing two settings at random, as ``cascade
    bench`` reports it) reaches ``share`` of the best single model's accuracy, as a share of
    that model's cost (inf: never)."""
    from cascade.bench._metrics import cost_to_reach

    cost = cost_to_reach(points, share * best_accuracy - 1e-12)
    return float("inf") if cost is None else cost / best_cost


def routing_points(score: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> list[tuple[float, float]]:
    """Two tiers: send the queries with the lowest ``score`` to tier 1, the rest to tier 0,
    for every number sent (routing: the cheap tier is not called for those sent on)."""
    order = np.argsort(score, kind="stable")
    n = len(score)
    up = np.zeros(n + 1)
    up[1:] = np.cumsum(quality[order, 1] - quality[order, 0])
    extra = np.zeros(n + 1)
    extra[1:] = np.cumsum(cost[order, 1] - cost[order, 0])
    base_q, base_c = float(quality[:, 0].sum()), float(cost[:, 0].sum())
    return [(base_c + extra[k], (base_q + up[k]) / n) for k in range(n + 1)]


def needed_auroc(quality: np.ndarray, cost: np.ndarray, strengths: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 3.0),
                 draws: int = 20, seed: int = 0) -> list[tuple[float, float, float]]:
    """(s, mean AUROC of the score for "tier 0 is right", median cost to 99 % at routing) for
    synthetic scores ``s · (quality_0 − quality_1) + N(0, 1)``."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    best = int(np.argmax(quality.mean(axis=0)))
    gain = quality[:, 0] - quality[:, 1]
    out = []
    for s in strengths:
        aurocs, shares = [], []
        for _ in range(draws):
            score = s * gain + rng.standard_normal(len(gain))
            aurocs.append(roc_auc_score(quality[:, 0] >= 0.5, score))
            shares.append(cost_to_share(routing_points(score, quality, cost), float(quality[:, best].mean()),
                                        float(cost[:, best].sum())))
        out.append((float(s), float(np.mean(aurocs)), float(np.median(shares))))
    return out


async def _suite(name: str, data: object, router: str) -> None:
    from sklearn.metrics import roc_auc_score

    from cascade.bench._replay import bench_encoder, open_side, singles
    from cascade.bench._routing import _choose, _cross_fit, _fit, _inputs, router_kind
    from cascade.bench._suites import SUITES
    from cascade.bench._unified import MAX_CALLS, _data, _groups
    from cascade.routing._unified_train import candidate_models, choose_rule, sweep_unified
    from verifiers import shared_static

    suite = SUITES[name]
    train, test = open_side(suite, data, "train"), open_side(suite, data, "test")  # type: ignore[arg-type]
    single_train, single_test = await singles(train), await singles(test)
    kind, static = router_kind(router)
    inputs = _inputs(train, test, single_train, shared_static() if static else bench_encoder())
    chosen = _choose(kind, inputs)
    p_train = _cross_fit(kind, inputs, chosen).p
    p_test = _fit(kind, inputs, np.arange(inputs.labels.shape[0]), chosen).predict(list(inputs.texts[1]), inputs.x[1])
    tiers = candidate_models(inputs.labels, inputs.cost)
    names = [inputs.names[t] for t in tiers]
    q_test = np.stack([single_test[n].correct for n in names], axis=1).astype(float)
    c_test = np.stack([single_test[n].cost for n in names], axis=1)
    fitted = {"train": _data(names, p_train[:, tiers], inputs.labels[:, tiers], inputs.cost[:, tiers],
                             _groups(train, names, suite.answer)),
              "test": _data(names, p_test[:, tiers], q_test, c_test, _groups(test, names, suite.answer))}
    everyone = {n: (float(o.correct.mean()), float(o.cost.sum())) for n, o in single_test.items()}
    best_name = max(everyone, key=lambda n: (everyone[n][0], -everyone[n][1]))
    best_acc, best_cost = everyone[best_name]
    print(f"\n## {name}: best single model {best_name} {best_acc:.3f} at ${best_cost:.4f}; "
          f"tiers {', '.join(names)}", flush=True)
    for label in ("train", "test"):
        model, _ = choose_rule(fitted[label], MAX_CALLS)
        points = [r.point for _, r in sweep_unified(model, fitted["test"])]
        share = cost_to_share(points, best_acc, best_cost)
        print(f"- unified-{router}, quality models fitted on {label}"
              f"{' (in-sample)' if label == 'test' else ''}: cost to 99 % = {share:.1%}", flush=True)
    if len(names) == 2:
        auroc = roc_auc_score(q_test[:, 0] >= 0.5, p_test[:, tiers[0]])
        print(f"- AUROC of the {router} prior for \"{names[0]} is right\" on test: {auroc:.3f}")
        for s, a, share in needed_auroc(q_test, c_test):
            print(f"- synthetic score s={s:g}: AUROC {a:.3f} → routing reaches 99 % at {share:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", default=["gsm8k", "mbpp", "winogrande", "arc", "mot-date"])
    parser.add_argument("--data", default=None, help="recorded data (default: ../shared/data)")
    parser.add_argument("--router", default="mf-static", help="the prior's router kind")
    args = parser.parse_args()
    from pathlib import Path

    from cascade.bench._cli import default_data

    data = Path(args.data) if args.data else default_data()
    if data is None or not data.is_dir():
        raise SystemExit("no recorded data: give --data DIR (../shared/data)")
    print(f"# Cost to {TARGET_SHARE:.0%} of the best single model (target ≤ {COST_SHARE:.0%}), router {args.router}")
    for name in args.suites:
        anyio.run(_suite, name, data, args.router)


if __name__ == "__main__":
    main()
