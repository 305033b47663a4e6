"""The ``cascade`` command line (typer + rich)."""

from cascade.cli import _bench, _report, _route, _search, _serve, _train  # noqa: F401  (register their commands)
from cascade.cli._app import app, main

__all__ = ["app", "main"]
