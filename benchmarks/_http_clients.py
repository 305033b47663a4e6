"""One client of the HTTP overhead benchmark, run in its own process (and, for LiteLLM's
Router, in LiteLLM's own venv). Prints one JSON line: per-request latencies (s) and
throughput (req/s).

    python _http_clients.py CLIENT PORT REQUESTS CONCURRENCY [RATE]

CLIENT: httpx | cascade | gateway | gateway-no-metrics | floor-proxy | litellm-router | litellm-proxy. With RATE > 0 requests
start at RATE per second whatever the answers (open loop, at most CONCURRENCY in flight);
otherwise CONCURRENCY callers each send their next request when the previous one answered.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

MESSAGES = [{"role": "user", "content": "Say ok."}]
KEY = "sk-bench"  # the gateway's and LiteLLM proxy's key in the benchmark


async def drive(call: Callable[[], Awaitable[object]], requests: int, concurrency: int,
                rate: float = 0.0) -> dict:
    for _ in range(min(50, requests)):  # warm-up: connections, imports, caches
        await call()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            start = time.perf_counter()
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - counted and reported, not hidden
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    if rate > 0:
        async with asyncio.TaskGroup() as group:
            for i in range(requests):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                group.create_task(one())
    else:
        await asyncio.gather(*(one() for _ in range(requests)))
    elapsed = time.perf_counter() - start
    return {"latencies": latencies, "throughput": len(latencies) / elapsed, "errors": errors}


def _poster(port: int, headers: dict[str, str]) -> tuple[object, Callable[[], Awaitable[object]]]:
    import httpx

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", limits=limits,
                               headers=headers, trust_env=False, timeout=60)

    async def call() -> object:
        response = await client.post("/chat/completions", json={"model": "m",
                                                                "messages": MESSAGES})
        response.raise_for_status()
        return response.json()

    return client, call


async def bare_httpx(port: int, requests: int, concurrency: int, rate: float) -> dict:
    """The baseline: a bare httpx call to the upstream itself."""
    client, call = _poster(port, {})
    async with client:  # type: ignore[attr-defined]
        return await drive(call, requests, concurrency, rate)


async def proxy(port: int, requests: int, concurrency: int, rate: float) -> dict:
    """A bare httpx call to a proxy in front of the upstream (``cascade serve`` or LiteLLM's
    proxy), with the benchmark's key."""
    client, call = _poster(port, {"authorization": f"Bearer {KEY}"})
    async with client:  # type: ignore[attr-defined]
        return await drive(call, requests, concurrency, rate)


async def ours(port: int, requests: int, concurrency: int, rate: float) -> dict:
    from cascade import Cascade, parse_policy

    policy = parse_policy(f"tiers:\n  - {{name: m, model: m, provider: {{kind: openai, "
                          f"base_url: 'http://127.0.0.1:{port}/v1'}}}}\n")
    async with Cascade.from_policy(policy) as engine:
        return await drive(lambda: engine.run("Say ok."), requests, concurrency, rate)


async def litellm_router(port: int, requests: int, concurrency: int, rate: float) -> dict:
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router = Router(model_list=[{"model_name": "m", "litellm_params": {
        "model": "openai/m", "api_base": f"http://127.0.0.1:{port}/v1", "api_key": "none"}}])
    return await drive(lambda: router.acompletion(model="m", messages=MESSAGES), requests,
                       concurrency, rate)


CLIENTS = {"httpx": bare_httpx, "cascade": ours, "gateway": proxy,
           "litellm-router": litellm_router, "litellm-proxy": proxy, "floor-proxy": proxy,
           "gateway-no-metrics": proxy}

if __name__ == "__main__":
    name, port, requests, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4])
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    print(json.dumps(asyncio.run(CLIENTS[name](port, requests, concurrency, rate))))
