"""The ``cascade`` command line (typer + rich)."""

from cascade.cli import _bench  # noqa: F401  (registers `cascade bench`)
from cascade.cli._app import app, main

__all__ = ["app", "main"]
