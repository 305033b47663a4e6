"""The ``cascade`` command line (typer + rich)."""

from cascade.cli import _bench, _train  # noqa: F401  (register bench, calibrate, train-verifier)
from cascade.cli._app import app, main

__all__ = ["app", "main"]
