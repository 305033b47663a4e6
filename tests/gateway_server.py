"""A gateway on loopback for tests: uvicorn in a thread of this process (``running``) or
``cascade serve`` as a subprocess (``subprocess_gateway``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from cascade.server import GatewayConfig, create_app

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-key-1"
OTHER_KEY = "sk-test-key-2"
KEYS_ENV = {"CASCADE_API_KEYS": f"team-a={KEY},team-b={OTHER_KEY}"}


@contextlib.contextmanager
def running(policies: Path, config: GatewayConfig | None = None) -> Iterator[str]:
    """The gateway's base URL (``http://127.0.0.1:PORT/v1``) while the block runs."""
    app = create_app(config or GatewayConfig(), policies=policies, env=KEYS_ENV)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def subprocess_gateway(policies: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``cascade serve`` in a process of its own; (base URL, process)."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    env = {**os.environ, **KEYS_ENV, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from cascade.cli import main; main()", "serve", "--policies",
         str(policies), "--port", str(port), "--log-level", "warning", *args],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"cascade serve exited: {log.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("cascade serve did not start within 30 s")
            time.sleep(0.1)
        yield f"{base}/v1", process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
