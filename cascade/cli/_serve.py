"""``cascade serve``: the OpenAI-compatible gateway (needs the ``server`` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cascade.cli._app import EXIT_BAD_INPUT, _fail, app
from cascade.errors import ConfigError


@app.command()
def serve(
    policies: Annotated[Path | None, typer.Option(help="directory of policy files; each file "
                                                  "is a model named after its stem")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=0, max=65535)] = 8000,
    config: Annotated[Path | None, typer.Option(help="gateway config YAML: keys, limits, "
                                                "per-model rules (docs/gateway.md)")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes", min=1, max=64)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    access_log: Annotated[bool, typer.Option(help="uvicorn's access log, a line per request "
                                             "(off: traces and metrics cover requests)")] = False,
    hash_key: Annotated[str | None, typer.Option(
        "--hash-key", help="print the sha256 of this API key for the config's `keys:`, "
        "and exit")] = None,
) -> None:
    """Serve every policy in POLICIES as an OpenAI-compatible API (/v1/chat/completions)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from cascade import server
    except ImportError as exc:
        raise _fail(f"cascade serve needs the server extra: pip install 'cascade[server]' "
                    f"({exc})", EXIT_BAD_INPUT) from None
    if hash_key is not None:
        print(server.hash_key(hash_key))
        return
    if policies is None:
        raise _fail("--policies DIR is required", EXIT_BAD_INPUT)
    try:
        gateway_config = server.load_gateway_config(config)
        server.ApiKeys.build(gateway_config, os.environ)  # no keys: refuse to start
        server.check_policies(policies, gateway_config.default_model, gateway_config.models)
        server.serve(policies, host=host, port=port, config_path=config, workers=workers,
                     log_level=log_level, access_log=access_log)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
