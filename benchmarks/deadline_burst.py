"""Deadlines that fire together: N runs start at once on a 2-tier cascade whose first tier
answers in 10 ms and escalates and whose second tier hangs, all with the same deadline.
Prints how late (negative: early) the runs returned relative to their deadline.

    .venv/bin/python benchmarks/deadline_burst.py [--runs 1000] [--deadline 2]
"""

from __future__ import annotations

import argparse
import time

import anyio

from cascade import Cascade, CascadeError, Choice, Completion, ModelCall, Tier
from verifiers import Capability, Estimate, EstimateContext


class _Sleeping:
    supports_n = False

    def __init__(self, name: str, seconds: float) -> None:
        self.deployment = f"{name}@memory"
        self.seconds = seconds

    async def complete(self, call: ModelCall) -> Completion:
        await anyio.sleep(self.seconds)
        return Completion((Choice("ok"),), call.model, 10, 2)

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class _Escalate:
    name = "constant"
    requires: frozenset[Capability] = frozenset()

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        return Estimate(0.1)


async def main(runs: int, deadline: float) -> None:
    engine = Cascade([Tier("a", "s", _Sleeping("fast", 0.01), _Escalate(), 0.5),
                      Tier("b", "l", _Sleeping("hang", 3600), None, None)], deadline_s=deadline)
    late: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        try:
            await engine.run(f"q{i}")
        except CascadeError:
            pass
        late.append(time.perf_counter() - started - deadline)

    async with anyio.create_task_group() as group:
        for i in range(runs):
            group.start_soon(one, i)
    late.sort()
    print(f"{runs} runs, deadline {deadline:g} s: late (ms, negative = early) p50 "
          f"{1000 * late[runs // 2]:.0f}, p99 {1000 * late[int(runs * 0.99)]:.0f}, max "
          f"{1000 * late[-1]:.0f}; more than 50 ms late: {sum(x > 0.05 for x in late)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--deadline", type=float, default=2.0)
    args = parser.parse_args()
    anyio.run(main, args.runs, args.deadline)
