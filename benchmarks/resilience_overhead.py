"""Cost per call of the resilience components, one call at a time.

    .venv/bin/python benchmarks/resilience_overhead.py [--ops 5000]

Prints p50 / p99 (µs) of what the call seam adds per model call:
- breaker: ``acquire`` + ``record`` (pure, in process);
- budget: ``reserve`` + ``settle`` with two rules (feature/day in dollars, caller/minute in
  requests), on MemoryStore, on RedisStore and on FailoverStore(RedisStore);
- retry budget: ``on_request``, on the same stores.
Redis is a local ``redis-server`` started on a free loopback port (no persistence).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

import anyio

from cascade.resilience import (
    BreakerConfig,
    BudgetRule,
    Budgets,
    BudgetScope,
    CircuitBreaker,
    Period,
    Reservation,
    RetryBudget,
)
from cascade.state import FailoverStore, MemoryStore, RedisStore, Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    port = _free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("redis-server did not start")


def _report(name: str, samples: list[float]) -> None:
    samples.sort()
    p50 = statistics.median(samples) * 1e6
    p99 = samples[int(len(samples) * 0.99)] * 1e6
    print(f"{name:<52} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs")


async def _time(ops: int, op: Callable[[], Awaitable[None]]) -> list[float]:
    samples = []
    for _ in range(ops):
        start = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - start)
    return samples


async def _stores(url: str) -> list[tuple[str, Store]]:
    return [("MemoryStore", MemoryStore()),
            ("RedisStore", RedisStore(url, prefix="bench:")),
            ("FailoverStore(RedisStore)", FailoverStore(RedisStore(url, prefix="bench2:")))]


async def main(ops: int) -> None:
    breaker = CircuitBreaker(BreakerConfig(), time.monotonic)
    samples = []
    for _ in range(ops):
        start = time.perf_counter()
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, failure=False, duration_s=0.1)
        samples.append(time.perf_counter() - start)
    _report("breaker acquire + record", samples)

    process, url = _start_redis()
    try:
        rules = [BudgetRule("daily", BudgetScope.FEATURE, Period.DAY, usd=1e9),
                 BudgetRule("rpm", BudgetScope.CALLER, Period.MINUTE, requests=10**9)]
        for name, store in await _stores(url):
            budgets = Budgets(rules, store)

            async def spend(budgets: Budgets = budgets) -> None:
                reservation = await budgets.reserve("chat", {"caller": "alice"}, 0.01)
                assert isinstance(reservation, Reservation)
                await budgets.settle(reservation, 0.005)

            _report(f"budget reserve + settle, {name}", await _time(ops, spend))
            retry = RetryBudget(store)

            async def request(retry: RetryBudget = retry) -> None:
                await retry.on_request("dep")

            _report(f"retry budget on_request, {name}", await _time(ops, request))
            await store.aclose()
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000)
    anyio.run(main, parser.parse_args().ops)
