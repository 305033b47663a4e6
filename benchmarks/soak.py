"""Soak: many concurrent ``Cascade.run`` calls through the fault-injection upstream.

    .venv/bin/python benchmarks/soak.py [--runs 10000] [--concurrency 100 1000] [--deadline 8]

Three fault-injecting OpenAI-compatible servers on loopback (``benchmarks/fault_upstream.py``,
each a process of its own), all with the same seeded mix of faults: 20 % 429 with
``Retry-After: 1``, 10 % 5xx, 5 % hangs (a timeout), 5 % connection resets, 2 % malformed
JSON. The policy: a cheap tier with two deployments (the first two servers) and a dear tier on
the third; each try may take 2 s; the run's deadline is ``--deadline``.

Prints per concurrency level:
- runs lost (neither a ``Result`` nor a typed ``CascadeError``: must be 0);
- runs past their deadline by more than 50 ms (must be 0);
- upstream requests per run and what the faults alone made necessary (each failed request
  needs one more), i.e. retry amplification beyond fallbacks;
- breaker trips and recoveries; p50 / p99 run latency; peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402

from benchmarks.fault_upstream import FaultUpstream, RemoteUpstream  # noqa: E402
from cascade import Cascade, CascadeError, Result, parse_policy  # noqa: E402
from cascade.types import CallEvent  # noqa: E402

MIX = {"rate_limited": 0.20, "server_error": 0.10, "hang": 0.05, "reset": 0.05,
       "malformed_json": 0.02}


def policy(a: str, b: str, c: str, deadline_s: float) -> str:
    return f"""
deadline_s: {deadline_s}
resilience:
  bulkhead: {{max_in_flight: 64, max_queue: 100000}}
tiers:
  - name: cheap
    model: small
    timeout_s: 2
    price: {{input_per_1m: 0.15, output_per_1m: 0.6}}
    deployments:
      - provider: {{kind: openai, base_url: "{a}"}}
      - provider: {{kind: openai, base_url: "{b}"}}
  - name: dear
    model: big
    timeout_s: 2
    price: {{input_per_1m: 2.5, output_per_1m: 10}}
    provider: {{kind: openai, base_url: "{c}"}}
"""


def _outcome(call: CallEvent) -> str:
    return call.outcome.value + ("" if call.error is None else ":" + call.error.split(":")[0])


async def soak(servers: list[RemoteUpstream], runs: int, concurrency: int,
               deadline_s: float) -> dict[str, float]:
    for i, server in enumerate(servers):
        server.reset()
        server.set_mix(MIX, seed=1 + i)
    engine = Cascade.from_policy(parse_policy(policy(*(s.base_url for s in servers), deadline_s)))
    late, lost, typed, answered = 0, 0, 0, 0
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    limiter = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        nonlocal late, lost, typed, answered
        try:  # the slot was taken by the producer below
            started = time.perf_counter()
            try:
                result = await engine.run(f"question {i}")
            except CascadeError as exc:
                typed += 1
                for attempt in getattr(exc, "attempts", ()):
                    outcomes.update(_outcome(call) for call in attempt.calls)
            except Exception as exc:  # noqa: BLE001 - counted as lost, reported below
                lost += 1
                print(f"lost: {type(exc).__name__}: {exc}", file=sys.stderr)
            else:
                answered += isinstance(result, Result)
                for attempt in result.attempts:
                    outcomes.update(_outcome(call) for call in attempt.calls)
            took = time.perf_counter() - started
            latencies.append(took)
            late += took > deadline_s + 0.05
        finally:
            limiter.release()

    started = time.perf_counter()
    async with engine:
        async with anyio.create_task_group() as group:
            for i in range(runs):
                try:  # a run starts when a slot frees, as real traffic would (not 10,000
                    limiter.acquire_nowait()  # tasks parked at once); no checkpoint while
                except anyio.WouldBlock:  # slots are free
                    await limiter.acquire()
                group.start_soon(one, i)
        health = engine.health()
    wall = time.perf_counter() - started
    stats = [s.stats() for s in servers]
    requests = sum(s["requests"] for s in stats)
    failed = sum(n for s in stats for fault, n in s["by_fault"].items() if fault != "ok")
    latencies.sort()
    return {
        "runs": runs, "concurrency": concurrency, "answered": answered, "typed_errors": typed,
        "lost": lost, "late": late, "requests_per_run": requests / runs,
        "needed_per_run": (runs + failed) / runs,
        "trips": sum(getattr(h, "trips", 0) for h in health),
        "open_now": sum(h.state.value != "closed" for h in health),
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "outcomes": dict(outcomes.most_common(8)),
        "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--deadline", type=float, default=8.0)
    args = parser.parse_args()
    print("| concurrency | runs | answered | typed errors | lost | past deadline +50 ms | "
          "upstream requests/run | needed by faults/run | breaker trips | p50 s | p99 s | "
          "wall s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with FaultUpstream.running() as a, FaultUpstream.running() as b, FaultUpstream.running() as c:
        for level in args.concurrency:
            r = anyio.run(soak, [a, b, c], args.runs, level, args.deadline)
            print(f"| {level} | {r['runs']} | {r['answered']} | {r['typed_errors']} | "
                  f"{r['lost']} | {r['late']} | {r['requests_per_run']:.3f} | "
                  f"{r['needed_per_run']:.3f} | {r['trips']} | {r['p50_s']:.3f} | "
                  f"{r['p99_s']:.3f} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} |", flush=True)
            print(f"  calls by outcome: {r['outcomes']}", file=sys.stderr)


if __name__ == "__main__":
    main()
