"""Added latency over HTTP: a bare httpx call, our engine in process, our gateway (``cascade
serve``, called with a bare httpx client) and LiteLLM's Router against the same local
OpenAI-compatible upstream with a fixed latency, at the same concurrency.

    .venv/bin/python benchmarks/overhead_http.py [--requests 2000] [--latency-ms 0]
        [--concurrency 1 10 100] [--rounds 5] [--interval-s 1]
        [--litellm-python ~/.cache/cascade/venv-litellm/bin/python]

Each cell's requests are split into ``--rounds`` rounds; within a round the clients run one
after the other in a rotating order with ``--interval-s`` of pause between runs, so a slow
spell of this shared machine falls on every client alike; latencies are pooled over rounds.

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
CLIENTS = ("httpx", "cascade", "gateway", "litellm")


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


def wait_ready(port: int, timeout: float = 20.0, path: str = "/v1/models") -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--no-gateway", action="store_true", help="leave cascade serve out")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.upstream, args.latency_ms)
        return
    port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(port),
                                 "--latency-ms", str(args.latency_ms)])
    gateway, gateway_port = None, 0
    try:
        wait_ready(port)
        if not args.no_gateway:
            gateway, gateway_port = start_gateway(port)
        report(args, port, gateway_port)
    finally:
        for process in (gateway, upstream):
            if process is not None:
                process.terminate()
                process.wait(30)


def start_gateway(upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """``cascade serve`` over one policy (model ``m``: one tier, the upstream)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="cascade-bench-gw-"))
    (folder / "m.yaml").write_text(f"tiers:\n  - {{name: m, model: m, provider: {{kind: openai, "
                                   f"base_url: 'http://127.0.0.1:{upstream_port}/v1'}}}}\n")
    port = free_port()
    env = dict(os.environ, CASCADE_API_KEYS="bench=sk-bench", OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=str(HERE.parent))
    process = subprocess.Popen([sys.executable, "-c", "from cascade.cli import main; main()",
                                "serve", "--policies", str(folder), "--port", str(port),
                                "--log-level", "warning"], env=env)
    wait_ready(port, path="/healthz")
    return process, port


def measure(args: argparse.Namespace, pythons: dict[str, str], ports: dict[str, int],
            concurrency: int) -> dict[str, dict]:
    """Every client's pooled latencies over the rounds (rotating order, pauses between)."""
    names = list(pythons)
    per_round = max(concurrency, args.requests // args.rounds)
    cells: dict[str, dict] = {n: {"latencies": [], "throughput": []} for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            cell = run_client(pythons[name], name, ports[name], per_round, concurrency)
            cells[name]["latencies"] += cell["latencies"]
            cells[name]["throughput"].append(cell["throughput"])
            time.sleep(args.interval_s)
    return {n: {"latencies": c["latencies"],
                "throughput": sorted(c["throughput"])[len(c["throughput"]) // 2]}
            for n, c in cells.items()}


def report(args: argparse.Namespace, port: int, gateway_port: int) -> None:
    pythons = {"httpx": sys.executable, "cascade": sys.executable, "gateway": sys.executable,
               "litellm": args.litellm_python}
    ports = {"httpx": port, "cascade": port, "gateway": gateway_port, "litellm": port}
    if not gateway_port:
        pythons.pop("gateway")
    if not Path(args.litellm_python).exists():
        print(f"(LiteLLM skipped: {args.litellm_python} not found)")
        pythons.pop("litellm")
    print(f"upstream latency {args.latency_ms:g} ms; {args.requests} requests per cell in "
          f"{args.rounds} interleaved rounds ({args.interval_s:g} s apart); added = latency - "
          "bare httpx latency at the same percentile (µs)")
    print("| concurrency | client | p50 µs | p99 µs | added p50 µs | added p99 µs | req/s "
          "| added p50 / ours |")
    print("|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        cells = measure(args, pythons, ports, concurrency)
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
