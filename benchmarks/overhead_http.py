"""Added latency over HTTP: a bare httpx call, our engine, and LiteLLM's Router against the
same local OpenAI-compatible upstream with a fixed latency, at the same concurrency.

    .venv/bin/python benchmarks/overhead_http.py [--requests 2000] [--latency-ms 0]
        [--concurrency 1 10 100] [--litellm-python ~/.cache/cascade/venv-litellm/bin/python]

The upstream (Starlette on uvicorn) runs in its own process, each client in its own process
too (LiteLLM from its own venv: it pins a different `openai` than our test tools; create it
with `python3 -m venv V && V/bin/pip install litellm`). Added latency = a client's latency
minus the bare httpx call's, at the same percentile; p50 / p99, throughput and the ratio of
each client's added p50 to ours are printed.

The upstream answers at once by default: on this VM `time.sleep(0.02)` itself takes 200 ms or
more for 10 % of calls, so a sleeping upstream makes every percentile timer noise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENTS = ("httpx", "cascade", "litellm")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_upstream(port: int, latency_ms: float) -> None:
    import anyio
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}

    async def chat(request: Request) -> JSONResponse:
        await request.body()
        if latency_ms:
            await anyio.sleep(latency_ms / 1000)
        return JSONResponse(body)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/models", models)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                backlog=4096, limit_concurrency=None)


def wait_ready(port: int, timeout: float = 20.0) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the upstream did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_client(python: str, client: str, port: int, requests: int, concurrency: int) -> dict:
    script = HERE / "_http_clients.py"
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run([python, str(script), client, str(port), str(requests), str(concurrency)],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{client} client failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--litellm-python", default=str(Path.home() / ".cache/cascade/venv-litellm/bin/python"))
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.upstream, args.latency_ms)
        return
    port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(port),
                                 "--latency-ms", str(args.latency_ms)])
    try:
        wait_ready(port)
        report(args, port)
    finally:
        upstream.terminate()
        upstream.wait(10)


def report(args: argparse.Namespace, port: int) -> None:
    pythons = {"httpx": sys.executable, "cascade": sys.executable, "litellm": args.litellm_python}
    if not Path(args.litellm_python).exists():
        print(f"(LiteLLM skipped: {args.litellm_python} not found)")
        pythons.pop("litellm")
    print(f"upstream latency {args.latency_ms:g} ms; {args.requests} requests per cell; "
          "added = latency - bare httpx latency at the same percentile (µs)")
    print("| concurrency | client | p50 µs | p99 µs | added p50 µs | added p99 µs | req/s "
          "| added p50 / ours |")
    print("|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        cells = {name: run_client(py, name, port, args.requests, concurrency)
                 for name, py in pythons.items()}
        base50 = percentile(cells["httpx"]["latencies"], 0.5)
        base99 = percentile(cells["httpx"]["latencies"], 0.99)
        ours = percentile(cells["cascade"]["latencies"], 0.5) - base50
        for name, cell in cells.items():
            p50, p99 = percentile(cell["latencies"], 0.5), percentile(cell["latencies"], 0.99)
            ratio = f"{(p50 - base50) / ours:.1f}×" if ours > 0 and name != "httpx" else "–"
            print(f"| {concurrency} | {name} | {p50 * 1e6:,.0f} | {p99 * 1e6:,.0f} "
                  f"| {(p50 - base50) * 1e6:,.0f} | {(p99 - base99) * 1e6:,.0f} "
                  f"| {cell['throughput']:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
