"""One client of the HTTP overhead benchmark, run in its own process (and, for LiteLLM, its
own venv). Prints one JSON line: per-request latencies (s) and throughput (req/s).

    python _http_clients.py httpx|cascade|gateway|litellm PORT REQUESTS CONCURRENCY
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

MESSAGES = [{"role": "user", "content": "Say ok."}]


async def drive(call: Callable[[], Awaitable[object]], requests: int, concurrency: int) -> dict:
    for _ in range(min(50, requests)):  # warm-up: connections, imports, caches
        await call()
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    elapsed = time.perf_counter() - start
    return {"latencies": latencies, "throughput": requests / elapsed}


async def bare_httpx(port: int, requests: int, concurrency: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", limits=limits) as client:
        async def call() -> object:
            response = await client.post("/chat/completions", json={"model": "m", "messages": MESSAGES})
            response.raise_for_status()
            return response.json()

        return await drive(call, requests, concurrency)


async def gateway(port: int, requests: int, concurrency: int) -> dict:
    """A bare httpx call to ``cascade serve`` (which calls the upstream through one tier)."""
    import httpx

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    headers = {"authorization": "Bearer sk-bench"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", limits=limits,
                                 headers=headers) as client:
        async def call() -> object:
            response = await client.post("/chat/completions", json={"model": "m", "messages": MESSAGES})
            response.raise_for_status()
            return response.json()

        return await drive(call, requests, concurrency)


async def ours(port: int, requests: int, concurrency: int) -> dict:
    from cascade import Cascade, parse_policy

    policy = parse_policy(f"tiers:\n  - {{name: m, model: m, provider: {{kind: openai, "
                          f"base_url: 'http://127.0.0.1:{port}/v1'}}}}\n")
    async with Cascade.from_policy(policy) as engine:
        return await drive(lambda: engine.run("Say ok."), requests, concurrency)


async def litellm_router(port: int, requests: int, concurrency: int) -> dict:
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router = Router(model_list=[{"model_name": "m", "litellm_params": {
        "model": "openai/m", "api_base": f"http://127.0.0.1:{port}/v1", "api_key": "none"}}])
    return await drive(lambda: router.acompletion(model="m", messages=MESSAGES), requests, concurrency)


CLIENTS = {"httpx": bare_httpx, "cascade": ours, "gateway": gateway, "litellm": litellm_router}

if __name__ == "__main__":
    name, port, requests, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(CLIENTS[name](port, requests, concurrency))))
