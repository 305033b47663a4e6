"""httpx throughput against one loopback upstream: one pool of N connections against our
``ShardedTransport`` (pools of 8), clients interleaved in rounds.

    .venv/bin/python benchmarks/http_pool.py [--rounds 3] [--seconds 3]

Prints requests/s per (client, concurrency) as the median of rounds with min–max. Concurrency
equals the number of connections. The upstream is ``benchmarks/fault_upstream.py`` (healthy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402
import httpx  # noqa: E402

from benchmarks.fault_upstream import FaultUpstream  # noqa: E402
from cascade.providers._http import ShardedTransport  # noqa: E402

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def client(url: str, connections: int, sharded: bool) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = ShardedTransport(connections) if sharded else None
    return httpx.AsyncClient(base_url=url, limits=limits, transport=transport, timeout=None)


async def rate(url: str, connections: int, sharded: bool, seconds: float) -> float:
    done = 0
    async with client(url, connections, sharded) as c:
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() - started < seconds:
                (await c.post("chat/completions", json=BODY)).raise_for_status()
                done += 1

        async with anyio.create_task_group() as group:
            for _ in range(connections):
                group.start_soon(worker)
        return done / (time.perf_counter() - started)


async def main(url: str, rounds: int, seconds: float) -> None:
    cases = [(n, False) for n in (1, 8, 32, 64)] + [(n, True) for n in (32, 64, 128)]
    results: dict[tuple[int, bool], list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            results[case].append(await rate(url, *case, seconds))
    print("| client | connections = concurrency | requests/s (median) | min – max |")
    print("|---|---|---|---|")
    for (n, sharded), values in results.items():
        name = "ShardedTransport (pools of 8)" if sharded else "one httpx pool"
        print(f"| {name} | {n} | {statistics.median(values):.0f} | "
              f"{min(values):.0f} – {max(values):.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with FaultUpstream.running() as up:
        anyio.run(main, up.base_url, args.rounds, args.seconds)
