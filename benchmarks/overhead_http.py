"""Added latency over HTTP: a bare httpx call, our engine in process, our gateway (``cascade
serve``, called with a bare httpx client), LiteLLM's Router in process and LiteLLM's proxy
(``litellm --config``, called with a bare httpx client) against the same local
OpenAI-compatible upstream, at the same concurrency.

    .venv/bin/python benchmarks/overhead_http.py [--requests 1000] [--rounds 5]
        [--interval-s 1] [--concurrency 1 10 100] [--rates 100 500] [--latency-ms 0]
        [--litellm /work/litellm-venv/bin/litellm | --no-litellm] [--json OUT.json]

Each cell's requests are split into ``--rounds`` rounds; within a round the clients run one
after the other in a rotating order with ``--interval-s`` of pause between runs, so a slow
spell of this shared machine falls on every client alike; latencies are pooled over rounds.
``--concurrency`` cells are closed loops (N callers, each sends its next request when the
previous one answered); ``--rates`` cells are open loops (requests start at that rate
whatever the answers).

The upstream (Starlette on uvicorn) runs in its own process, each client in its own process
too. Added latency = a client's latency minus the bare httpx call's, at the same
percentile, with a 95 % bootstrap interval (resampling both clients' requests); the ratio
column divides LiteLLM's added p50 by ours (proxy by gateway, Router by engine).

LiteLLM cannot share our venv (it pins openai<3). Build its own once:

    python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip install 'litellm[proxy]'

``--litellm`` names its ``litellm`` executable (default: /work/litellm-venv/bin/litellm when
it exists); the Router client runs with the ``python`` beside it. Without it, the LiteLLM
rows are left out and the run says so. LiteLLM runs with LITELLM_LOCAL_MODEL_COST_MAP=True
(offline) and its master key set, like our gateway's key.

The upstream answers at once by default: on this VM ``time.sleep(0.02)`` itself takes 200 ms
or more for 10 % of calls, so a sleeping upstream makes every percentile timer noise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LITELLM = Path("/work/litellm-venv/bin/litellm")
KEY = "sk-bench"
# (ours, theirs) for the ratio column
PAIRS = {"litellm-proxy": "gateway", "litellm-router": "cascade"}
BOOTSTRAP = 1000


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


def serve_floor(port: int, upstream_port: int) -> None:
    """The least a Python proxy does: uvicorn (uvloop, httptools), a raw ASGI app that sends
    the body to the upstream with one pooled httpx client and returns its bytes. No parsing,
    no auth, no engine: what any gateway built on this stack pays for the extra hop."""
    import httpx
    import uvicorn

    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{upstream_port}", trust_env=False,
                               limits=httpx.Limits(max_connections=1000,
                                                   max_keepalive_connections=1000))

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if scope["path"] != "/v1/chat/completions":  # readiness
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        answer = await client.post(scope["path"], content=body,
                                   headers={"content-type": "application/json"})
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer.content})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", lifespan="off")


def wait_ready(port: int, timeout: float = 20.0, path: str = "/v1/models",
               process: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited ({process.returncode})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1,
                         trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} did not answer {path} in {timeout:g} s")


@contextmanager
def process(args: list[str], port: int, path: str, *, env: dict[str, str] | None = None,
            timeout: float = 30.0, name: str = "server") -> Iterator[int]:
    """A server subprocess (output in a temp file, shown if it fails to start); its port."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        try:
            wait_ready(port, timeout, path, proc)
        except RuntimeError as exc:
            log.seek(0)
            raise RuntimeError(f"{name}: {exc}\n{log.read().decode(errors='replace')[-3000:]}") \
                from None
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def start_gateway(upstream_port: int) -> list[str]:
    """``cascade serve`` over one policy (model ``m``: one tier, the upstream)."""
    folder = Path(tempfile.mkdtemp(prefix="cascade-bench-gw-"))
    (folder / "m.yaml").write_text(f"tiers:\n  - {{name: m, model: m, provider: {{kind: openai, "
                                   f"base_url: 'http://127.0.0.1:{upstream_port}/v1'}}}}\n")
    return [sys.executable, "-c", "from cascade.cli import main; main()", "serve",
            "--policies", str(folder), "--log-level", "warning"]


def litellm_config(upstream_port: int) -> Path:
    """LiteLLM proxy config: model ``m`` = ``openai/m`` at the upstream, master key set."""
    folder = Path(tempfile.mkdtemp(prefix="cascade-bench-litellm-"))
    path = folder / "config.yaml"
    path.write_text(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n      api_key: none\n"
        "litellm_settings:\n  telemetry: false\n  suppress_debug_info: true\n"
        f"general_settings:\n  master_key: {KEY}\n")
    return path


def client_env() -> dict[str, str]:
    return dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", OMP_WAIT_POLICY="PASSIVE",
                LITELLM_LOG="ERROR", PYTHONPATH=str(HERE.parent))


def run_client(python: str, client: str, port: int, requests: int, concurrency: int,
               rate: float) -> dict:
    script = HERE / "_http_clients.py"
    done = subprocess.run([python, str(script), client, str(port), str(requests),
                           str(concurrency), str(rate)], capture_output=True, text=True,
                          env=client_env(), timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{client} client failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Cell:
    concurrency: int
    rate: float = 0.0  # > 0: open loop at this many requests per second

    @property
    def label(self) -> str:
        return f"{self.rate:g} req/s" if self.rate else f"c={self.concurrency}"


@dataclass(frozen=True)
class Client:
    name: str
    python: str
    port: int


def measure(args: argparse.Namespace, clients: list[Client], cell: Cell) -> dict[str, dict]:
    """Every client's pooled latencies over the rounds (rotating order, pauses between)."""
    total = args.requests if not cell.rate else int(cell.rate * args.rate_seconds)
    per_round = max(cell.concurrency if not cell.rate else 1, total // args.rounds)
    cells: dict[str, dict] = {c.name: {"latencies": [], "throughput": [], "errors": {}}
                              for c in clients}
    for r in range(args.rounds):
        order = clients[r % len(clients):] + clients[:r % len(clients)]
        for client in order:
            got = run_client(client.python, client.name, client.port, per_round,
                             cell.concurrency, cell.rate)
            cells[client.name]["latencies"] += got["latencies"]
            cells[client.name]["throughput"].append(got["throughput"])
            for kind, count in got["errors"].items():
                cells[client.name]["errors"][kind] = cells[client.name]["errors"].get(kind, 0) + count
            time.sleep(args.interval_s)
    return {n: {"latencies": c["latencies"], "errors": c["errors"],
                "throughput": sorted(c["throughput"])[len(c["throughput"]) // 2]}
            for n, c in cells.items()}


def _quantiles(samples, q: float):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.quantile(samples, q, axis=-1, method="inverted_cdf")


def added(latencies: list[float], base: list[float], q: float, rng) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Added latency at quantile q (s) and its 95 % bootstrap interval."""
    import numpy as np

    a, b = np.asarray(latencies), np.asarray(base)
    point = float(_quantiles(a, q) - _quantiles(b, q))
    boot = (_quantiles(rng.choice(a, (BOOTSTRAP, a.size)), q)
            - _quantiles(rng.choice(b, (BOOTSTRAP, b.size)), q))
    low, high = np.percentile(boot, [2.5, 97.5])
    return point, float(low), float(high)


def ratio(theirs: list[float], ours: list[float], base: list[float], rng) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(their added p50) / (our added p50) with a 95 % bootstrap interval."""
    import numpy as np

    t, o, b = np.asarray(theirs), np.asarray(ours), np.asarray(base)
    point = float((_quantiles(t, .5) - _quantiles(b, .5)) / (_quantiles(o, .5) - _quantiles(b, .5)))
    bb = _quantiles(rng.choice(b, (BOOTSTRAP, b.size)), .5)
    boot = ((_quantiles(rng.choice(t, (BOOTSTRAP, t.size)), .5) - bb)
            / (_quantiles(rng.choice(o, (BOOTSTRAP, o.size)), .5) - bb))
    low, high = np.percentile(boot, [2.5, 97.5])
    return point, float(low), float(high)


def _us(value: float) -> str:
    return f"{value * 1e6:,.0f}"


def rows(cell: Cell, cells: dict[str, dict], rng) -> list[str]:  # type: ignore[no-untyped-def]
    base = cells["httpx"]["latencies"]
    out = []
    for name, got in cells.items():
        lat = got["latencies"]
        if not lat:
            out.append(f"| {cell.label} | {name} | – | – | – | – | 0 | all: {got['errors']} | – |")
            continue
        p50, p99 = _quantiles(lat, .5), _quantiles(lat, .99)
        if name == "httpx":
            a50 = a99 = "–"
        else:
            m, lo, hi = added(lat, base, .5, rng)
            a50 = f"{_us(m)} [{_us(lo)}, {_us(hi)}]"
            m, lo, hi = added(lat, base, .99, rng)
            a99 = f"{_us(m)} [{_us(lo)}, {_us(hi)}]"
        versus = "–"
        if name in PAIRS and PAIRS[name] in cells:
            ours = cells[PAIRS[name]]["latencies"]
            if added(ours, base, .5, rng)[1] <= 0:  # ours is within the noise of zero
                versus = f"– ({PAIRS[name]} adds nothing measurable)"
            else:
                m, lo, hi = ratio(lat, ours, base, rng)
                versus = f"{m:.1f}× [{lo:.1f}, {hi:.1f}] vs {PAIRS[name]}"
        failed = ", ".join(f"{n} {k}" for k, n in got["errors"].items()) or "0"
        out.append(f"| {cell.label} | {name} | {_us(p50)} | {_us(p99)} | {a50} | {a99} "
                   f"| {got['throughput']:,.0f} | {failed} | {versus} |")
    return out


def report(args: argparse.Namespace, clients: list[Client]) -> dict:
    """Print the table, cell by cell; every latency, by cell and client."""
    import numpy as np

    rng = np.random.default_rng(0)
    cells = [Cell(c) for c in args.concurrency] + [Cell(args.rate_concurrency, r)
                                                    for r in args.rates]
    print(f"upstream latency {args.latency_ms:g} ms; {args.requests} requests per closed-loop "
          f"cell ({args.rate_seconds:g} s per open-loop cell) in {args.rounds} interleaved "
          f"rounds ({args.interval_s:g} s apart); added = latency - bare httpx latency at "
          "the same percentile, µs [95 % bootstrap interval]", flush=True)
    print("| cell | client | p50 µs | p99 µs | added p50 µs | added p99 µs | answers/s "
          "| failed | LiteLLM added p50 / ours |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    raw: dict = {}
    for cell in cells:
        got = measure(args, clients, cell)
        print("\n".join(rows(cell, got, rng)), flush=True)
        raw[cell.label] = got
        if args.json:  # after every cell: a later failure loses nothing measured
            args.json.write_text(json.dumps(raw))
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 10, 100])
    parser.add_argument("--rates", type=float, nargs="*", default=[],
                        help="open-loop cells: requests per second (e.g. 100 500)")
    parser.add_argument("--rate-seconds", type=float, default=5.0,
                        help="seconds of requests per open-loop cell (over all rounds)")
    parser.add_argument("--rate-concurrency", type=int, default=1000,
                        help="most requests in flight in an open-loop cell")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--litellm", type=Path, default=DEFAULT_LITELLM,
                        help="LiteLLM's `litellm` executable (its own venv, see above)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--no-gateway", action="store_true", help="leave cascade serve out")
    parser.add_argument("--json", type=Path, help="write every latency here")
    parser.add_argument("--gateway-without-metrics", action="store_true",
                        help="also a gateway with `metrics: off` (what GET /metrics costs)")
    parser.add_argument("--floor", action="store_true", help="also a minimal Python proxy "
                        "(uvicorn + httpx, no engine): what the extra hop itself costs")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.upstream, args.latency_ms)
        return
    if args.serve_floor:
        serve_floor(*args.serve_floor)
        return
    with ExitStack() as stack:
        clients = start_all(args, stack)
        report(args, clients)


def start_all(args: argparse.Namespace, stack: ExitStack) -> list[Client]:
    """The upstream and the proxies, as processes that ``stack`` stops; the clients."""
    env = client_env()
    up = stack.enter_context(process([sys.executable, __file__, "--upstream", str(port := free_port()),
                                      "--latency-ms", str(args.latency_ms)], port, "/v1/models",
                                     name="upstream"))
    me = sys.executable
    clients = [Client("httpx", me, up), Client("cascade", me, up)]
    if not args.no_gateway:
        port = free_port()
        gateway = stack.enter_context(process(
            [*start_gateway(up), "--port", str(port)], port, "/healthz",
            env=dict(env, CASCADE_API_KEYS=f"bench={KEY}"), name="cascade serve"))
        clients.append(Client("gateway", me, gateway))
    if args.gateway_without_metrics:
        config = Path(tempfile.mkdtemp(prefix="cascade-bench-gwc-")) / "gateway.yaml"
        config.write_text("metrics: off\n")
        port = free_port()
        bare = stack.enter_context(process(
            [*start_gateway(up), "--port", str(port), "--config", str(config)], port,
            "/healthz", env=dict(env, CASCADE_API_KEYS=f"bench={KEY}"), name="cascade serve"))
        clients.append(Client("gateway-no-metrics", me, bare))
    if args.floor:
        port = free_port()
        floor = stack.enter_context(process(
            [sys.executable, __file__, "--serve-floor", str(port), str(up)], port, "/healthz",
            name="floor proxy"))
        clients.append(Client("floor-proxy", me, floor))
    if args.no_litellm:
        print("(LiteLLM left out: --no-litellm)")
    elif not args.litellm.exists():
        print(f"(LiteLLM left out: {args.litellm} not found; build its venv as --help says, "
              "or pass --litellm PATH)")
    else:
        python = str(args.litellm.parent / "python")
        clients.append(Client("litellm-router", python, up))
        port = free_port()
        proxy = stack.enter_context(process(
            [str(args.litellm), "--config", str(litellm_config(up)), "--host", "127.0.0.1",
             "--port", str(port)], port, "/health/liveliness", env=env, timeout=180,
            name="litellm proxy"))
        clients.append(Client("litellm-proxy", me, proxy))
    return clients


if __name__ == "__main__":
    main()
