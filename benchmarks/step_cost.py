"""Per-tier-step p50 of one engine checkout, printed alone: the unit of an interleaved
comparison between two commits (each process imports one checkout's ``cascade``).

    PYTHONPATH=CHECKOUT .venv/bin/python benchmarks/step_cost.py {default|configured}

``default``: a 2-tier cascade (instant provider, constant estimator that escalates) with the
engine's default resilience; ``configured``: the same plus two spending budgets (feature per
day, caller per minute) — ``benchmarks/seam_overhead.py``'s ``configured``. Prints the median of
5 rounds of 400 runs' per-step p50 (µs). Works on checkouts from before the seam (d1eaa0b),
which know only ``default``. Run it with the checkout measured first on ``PYTHONPATH`` (its
``cascade`` and ``benchmarks`` are the ones imported). Interleave two checkouts in repeated
rounds, e.g.:

    git worktree add /tmp/old d1eaa0b
    for i in 1 2 3 4 5 6 7 8; do
      (cd /tmp/old && PYTHONPATH=/tmp/old python $PWD/benchmarks/step_cost.py default)
      PYTHONPATH=. python benchmarks/step_cost.py configured
    done
"""

from __future__ import annotations

import statistics
import sys
import time

import anyio

# both from the checkout on PYTHONPATH (not from this file's): the comparison is of checkouts
from benchmarks.overhead_inprocess import Constant, Instant
from cascade import Cascade, Tier


def engine(variant: str) -> Cascade:
    kwargs: dict[str, object] = {}
    if variant == "configured":
        from cascade.policy import BudgetSpec, ResilienceSpec
        from cascade.resilience import Resilience

        kwargs["resilience"] = Resilience(ResilienceSpec(), (
            BudgetSpec(name="feature", period="day", usd=1e6),
            BudgetSpec(name="caller", scope="caller", period="minute", usd=1e6)))
    elif variant != "default":
        raise SystemExit(f"unknown variant {variant!r}: default or configured")
    return Cascade([Tier("small", "s", Instant(), Constant(0.1), 0.5),
                    Tier("large", "l", Instant(), None, None)], **kwargs)  # type: ignore[arg-type]


async def main(variant: str) -> None:
    e = engine(variant)
    for i in range(300):  # warm up
        await e.run("What is 2+2?", metadata={"caller": f"u{i % 10}"})
    medians = []
    for _ in range(5):
        samples = []
        for i in range(400):
            started = time.perf_counter_ns()
            await e.run("What is 2+2?", metadata={"caller": f"u{i % 10}"})
            samples.append((time.perf_counter_ns() - started) / 2000)  # µs per tier step
        medians.append(statistics.median(samples))
    print(f"{statistics.median(medians):.1f}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "default")
