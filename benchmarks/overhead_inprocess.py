"""Engine overhead in process: cascade runs against an instant provider.

    .venv/bin/python benchmarks/overhead_inprocess.py [--runs 20000]

Prints, with OpenTelemetry's no-op API (no SDK installed in the process):
- p50 / p99 per run and per tier step (µs) for a 1-tier and a 2-tier cascade, one run at a time;
- runs per second and per-run p50 / p99 at concurrency 1, 10, 100 and 1000 (2 tiers);
- memory per in-flight run: N runs held open inside their provider call, traced with
  tracemalloc, divided by N (at N = 10, 100, 1000: it should stay flat, i.e. linear growth).
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

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


class Gate:
    """A provider that holds every call until released (to count memory in flight)."""

    deployment = "gate@memory"
    supports_n = False

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.waiting = 0

    async def complete(self, call: ModelCall) -> Completion:
        self.waiting += 1
        await self.release.wait()
        return Completion((Choice("ok"),), call.model, 10, 2)

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def concurrent(engine: Cascade, runs: int, concurrency: int) -> tuple[float, list[float]]:
    """``concurrency`` workers, each running its share of the runs back to back."""
    samples: list[float] = []
    share = max(1, runs // concurrency)

    async def worker() -> None:
        for _ in range(share):
            start = time.perf_counter_ns()
            await engine.run("What is the capital of France?")
            samples.append((time.perf_counter_ns() - start) / 1000)

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return len(samples) / (time.perf_counter() - start), samples


async def in_flight_memory(count: int) -> float:
    gate = Gate()
    engine = Cascade([Tier("small", "s", gate, Constant(0.1), 0.5)])
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(engine.run, "What is the capital of France?")
        while gate.waiting < count:
            await anyio.sleep(0.001)
        after = tracemalloc.take_snapshot()
        gate.release.set()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / count


async def main(runs: int) -> None:
    one = Cascade([Tier("only", "m", Instant(), Constant(0.9), 0.5)])
    two = Cascade([Tier("small", "s", Instant(), Constant(0.1), 0.5),
                   Tier("large", "l", Instant(), Constant(0.9), 0.5)])
    for label, engine, steps in (("1 tier ", one, 1), ("2 tiers", two, 2)):
        samples = await measure(engine, runs)
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"{label}: per run p50 {p50:7.1f} µs  p99 {p99:7.1f} µs   "
              f"per tier step p50 {p50 / steps:6.1f} µs  ({runs} runs)")
    print("\n| concurrency | runs/s (2 tiers) | per-run p50 µs | per-run p99 µs |")
    print("|---|---|---|---|")
    for level in (1, 10, 100, 1000):
        rate, samples = await concurrent(two, runs, level)
        print(f"| {level} | {rate:,.0f} | {statistics.median(samples):,.0f} "
              f"| {percentile(samples, 0.99):,.0f} |")
    print("\n| runs in flight | memory per run (KiB) |")
    print("|---|---|")
    for count in (10, 100, 1000):
        print(f"| {count} | {await in_flight_memory(count) / 1024:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20000)
    anyio.run(main, parser.parse_args().runs)
