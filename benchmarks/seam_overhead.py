"""What the call seam costs per tier step, in process, against an instant provider.

    .venv/bin/python benchmarks/seam_overhead.py [--rounds 15] [--runs 400]

Three engines on the same 2-tier cascade (the first tier always escalates), measured in
interleaved rounds so that machine noise hits all of them alike:

- ``bare``: breakers off, no retries, no budgets (the seam's minimum: deployment order,
  bulkhead slot, per-try timeout, call record);
- ``configured``: everything on with no faults: circuit breakers, retries with the retry
  budget, a bulkhead, two spending budgets (feature and caller) on the in-memory store;
- ``direct``: the provider awaited directly, twice (what a run cannot go below).

Prints, per engine, the median over rounds of the per-tier-step p50 (µs) with the rounds'
min–max, and the configured engine's added cost over bare and over direct. The target of
issue 18: ``configured`` within 100 µs p50 per tier step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402

from benchmarks.overhead_inprocess import Constant, Instant  # noqa: E402
from cascade import Cascade, ModelCall, Message, Tier  # noqa: E402
from cascade.policy import BreakerSpec, BudgetSpec, Price, ResilienceSpec, RetrySpec  # noqa: E402
from cascade.resilience import Resilience  # noqa: E402

PRICE = Price(input_per_1m=0.15, output_per_1m=0.6)


def engine(resilience: Resilience) -> Cascade:
    tiers = [Tier("small", "s", Instant(), Constant(0.1), 0.5, PRICE),
             Tier("large", "l", Instant(), None, None, PRICE)]
    return Cascade(tiers, resilience=resilience)


def engines() -> dict[str, Cascade]:
    bare = Resilience(ResilienceSpec(breaker=BreakerSpec(enabled=False),
                                     retry=RetrySpec(max_attempts=1)))
    budgets = (BudgetSpec(name="feature", period="day", usd=1e6),
               BudgetSpec(name="caller", scope="caller", period="minute", usd=1e6))
    configured = Resilience(ResilienceSpec(), budgets)
    return {"bare": engine(bare), "configured": engine(configured)}


async def per_step(e: Cascade, runs: int) -> float:
    samples = []
    for i in range(runs):
        started = time.perf_counter_ns()
        await e.run("What is 2+2?", metadata={"caller": f"u{i % 10}"})
        samples.append((time.perf_counter_ns() - started) / 2000)  # µs per tier step
    return statistics.median(samples)


async def direct(runs: int) -> float:
    provider = Instant()
    call = ModelCall("s", (Message("user", "What is 2+2?"),), 16)
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        await provider.complete(call)
        await provider.complete(call)
        samples.append((time.perf_counter_ns() - started) / 2000)
    return statistics.median(samples)


async def scopes(n: int = 50_000) -> None:
    """What one timeout scope costs to enter and leave around an instant await (why the
    request path uses ``asyncio.timeout``: cascade/_timeouts.py)."""
    import asyncio

    async def instant() -> None:
        return None

    def fail_after() -> object:
        return anyio.fail_after(60)

    def native() -> object:
        return asyncio.timeout(60)

    for name, make, is_async in (("anyio.fail_after", fail_after, False),
                                 ("asyncio.timeout", native, True)):
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                if is_async:
                    async with make():  # type: ignore[attr-defined]
                        await instant()
                else:
                    with make():  # type: ignore[attr-defined]
                        await instant()
            samples.append((time.perf_counter() - started) / n * 1e6)
        print(f"{name}: {statistics.median(samples):.2f} µs per scope "
              f"(5 rounds: {min(samples):.2f} – {max(samples):.2f})")


async def main(rounds: int, runs: int) -> None:
    measured = engines()
    for e in measured.values():  # warm up
        await per_step(e, 50)
    results: dict[str, list[float]] = {name: [] for name in (*measured, "direct")}
    for _ in range(rounds):
        for name, e in measured.items():
            results[name].append(await per_step(e, runs))
        results["direct"].append(await direct(runs))
    print("| engine | per tier step p50 µs (median of rounds) | rounds min – max |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} – {max(values):.1f} |")
    added = [c - b for c, b in zip(results["configured"], results["bare"], strict=True)]
    over = [c - d for c, d in zip(results["configured"], results["direct"], strict=True)]
    print(f"\nconfigured − bare, per round: median {statistics.median(added):.1f} µs "
          f"(min {min(added):.1f}, max {max(added):.1f})")
    print(f"configured − direct, per round: median {statistics.median(over):.1f} µs "
          f"(min {min(over):.1f}, max {max(over):.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--scopes", action="store_true",
                        help="only time a timeout scope (anyio.fail_after vs asyncio.timeout)")
    args = parser.parse_args()
    if args.scopes:
        anyio.run(scopes)
    else:
        anyio.run(main, args.rounds, args.runs)
