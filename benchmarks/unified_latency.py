"""Decision latency of ``routing.mode: unified`` (``UnifiedModel.decide``), per step, for 2 to
5 tiers, excluding model calls and the router: a model fitted on synthetic recorded data, the
decision timed at every state of random call orders (0 to ``max_calls`` answers seen), for
each decision rule (spread, look-ahead).

    .venv/bin/python benchmarks/unified_latency.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses

import numpy as np

from cascade.routing._unified import DecisionRule
from cascade.routing._unified_train import UnifiedData, fit_unified


def _data(m: int, n: int = 150, seed: int = 0) -> UnifiedData:
    rng = np.random.default_rng(seed)
    skill = np.linspace(0.4, 0.95, m)
    p = np.clip(skill[None, :] * (1.25 - rng.uniform(size=(n, 1))), 0, 1)
    right = rng.uniform(size=p.shape) < p
    groups = np.where(right, 0, rng.integers(1, 5, size=p.shape))
    cost = np.tile(np.geomspace(0.01, 1.0, m), (n, 1))
    return UnifiedData(tuple(f"t{i}" for i in range(m)), np.clip(p + rng.normal(0, 0.05, p.shape), 0, 1),
                       right.astype(float), cost, groups)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    print("| rule | tiers | max calls | answers seen | p50 (ms) | p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for m, rule in ((m, rule) for rule in DecisionRule for m in (2, 3, 4, 5)):
        data = _data(m)
        model = dataclasses.replace(fit_unified(data, max_calls=min(3, m)), rule=rule)
        for seen in range(model.max_calls + 1):
            times = []
            for r in range(args.repeat):
                order = [int(t) for t in rng.permutation(m)][:seen]
                prior = data.prior[r % data.prior.shape[0]]
                groups = [int(data.groups[r % data.prior.shape[0], t]) for t in order]
                start = time.perf_counter()
                model.decide(prior, order, groups, 0.1)
                times.append(time.perf_counter() - start)
            ms = np.array(times) * 1e3
            print(f"| {rule.value} | {m} | {model.max_calls} | {seen} | {np.percentile(ms, 50):.3f} "
                  f"| {np.percentile(ms, 99):.3f} |")
    m = 5
    model = fit_unified(_data(m), max_calls=5)
    for seen in (0, 2, 4):  # the spread rule enumerates every plan: 32 with 5 calls
        times = []
        for r in range(args.repeat):
            order = [int(t) for t in rng.permutation(m)][:seen]
            start = time.perf_counter()
            model.decide(np.full(m, 0.7), order, list(range(seen)), 0.1)
            times.append(time.perf_counter() - start)
        ms = np.array(times) * 1e3
        print(f"| spread | 5 | 5 | {seen} | {np.percentile(ms, 50):.3f} | {np.percentile(ms, 99):.3f} |")


if __name__ == "__main__":
    main()
