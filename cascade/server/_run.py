"""Running the gateway on uvicorn: one process, or ``workers`` processes (uvicorn's own
supervisor; each worker builds the app from the environment). SIGTERM stops accepting
connections and lets requests in flight finish within the config's ``grace_s``."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from cascade.server._app import create_app
from cascade.server._config import GatewayConfig, MetricsAccess, load_gateway_config
from cascade.server._metrics import install_meter_provider

__all__ = ["app_from_environment", "fast_io", "serve"]

log = logging.getLogger("cascade.server")

ENV_POLICIES = "CASCADE_GATEWAY_POLICIES"
ENV_CONFIG = "CASCADE_GATEWAY_CONFIG"


def app_from_environment() -> Starlette:
    """uvicorn's factory for worker processes (``cascade.server._run:app_from_environment``)."""
    config = load_gateway_config(os.environ.get(ENV_CONFIG) or None)
    return create_app(config, policies=Path(os.environ[ENV_POLICIES]),
                      owns_meter_provider=_metrics(config))


def _metrics(config: GatewayConfig) -> bool:
    """This process's meter provider for GET /metrics (True: installed here)."""
    return config.metrics is not MetricsAccess.OFF and install_meter_provider()


def fast_io() -> dict[str, str]:
    """uvloop and httptools (the server extra); uvicorn's pure-Python fallbacks, with a
    warning, when they are missing (measured: docs/gateway.md, Overhead)."""
    found = {"loop": importlib.util.find_spec("uvloop") is not None,
             "http": importlib.util.find_spec("httptools") is not None}
    if not all(found.values()):
        missing = [name for name, ok in zip(("uvloop", "httptools"), found.values()) if not ok]
        log.warning("%s not installed: the gateway runs on uvicorn's slower asyncio/h11 "
                    "(pip install 'cascade-engine[server]')", " and ".join(missing))
    return {"loop": "uvloop" if found["loop"] else "asyncio",
            "http": "httptools" if found["http"] else "h11"}


def serve(policies: Path, *, host: str = "127.0.0.1", port: int = 8000,
          config_path: Path | None = None, workers: int = 1, log_level: str = "info",
          access_log: bool = False) -> None:
    """Run until SIGTERM / SIGINT. ``access_log``: uvicorn's line per request (off by
    default: traces and metrics describe every request; the line costs time on the request
    path)."""
    config = load_gateway_config(config_path)
    common = {"host": host, "port": port, "timeout_graceful_shutdown": config.grace_s,
              "timeout_keep_alive": config.keep_alive_s,
              "log_level": log_level, "lifespan": "on", "server_header": False,
              "access_log": access_log, **fast_io()}
    if workers > 1:
        os.environ[ENV_POLICIES] = str(policies.resolve())
        if config_path is not None:
            os.environ[ENV_CONFIG] = str(config_path.resolve())
        uvicorn.run("cascade.server._run:app_from_environment", factory=True, workers=workers,
                    **common)  # type: ignore[arg-type]
        return
    app = create_app(config, policies=policies, owns_meter_provider=_metrics(config))
    uvicorn.run(app, **common)  # type: ignore[arg-type]
