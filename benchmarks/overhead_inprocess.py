"""Engine overhead in process: cascade runs against an instant provider.

    .venv/bin/python benchmarks/overhead_inprocess.py [--runs 20000]

Prints p50 / p99 per run and per tier step (µs) for a 1-tier and a 2-tier cascade, with
OpenTelemetry's no-op API (no SDK installed in the process). The fuller benchmark suite
(concurrency, HTTP, LiteLLM comparison) is the benchmarks issue's work.
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio

from cascade import Cascade, Choice, Completion, ModelCall, Tier
from verifiers import Capability, Estimate, EstimateContext


class Instant:
    deployment = "instant@memory"
    supports_n = False

    async def complete(self, call: ModelCall) -> Completion:
        return Completion((Choice("ok"),), call.model, 10, 2)

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Constant:
    name = "constant"
    requires: frozenset[Capability] = frozenset()

    def __init__(self, value: float) -> None:
        self.value = value

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        return Estimate(self.value)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(engine: Cascade, runs: int) -> list[float]:
    for _ in range(min(1000, runs)):
        await engine.run("warm up")
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        await engine.run("What is the capital of France?")
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


async def main(runs: int) -> None:
    one = Cascade([Tier("only", "m", Instant(), Constant(0.9), 0.5)])
    two = Cascade([Tier("small", "s", Instant(), Constant(0.1), 0.5),
                   Tier("large", "l", Instant(), Constant(0.9), 0.5)])
    for label, engine, steps in (("1 tier ", one, 1), ("2 tiers", two, 2)):
        samples = await measure(engine, runs)
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"{label}: per run p50 {p50:7.1f} µs  p99 {p99:7.1f} µs   "
              f"per tier step p50 {p50 / steps:6.1f} µs  ({runs} runs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20000)
    anyio.run(main, parser.parse_args().runs)
