"""The ``cascade`` command line (typer + rich)."""

from cascade.cli._app import app, main

__all__ = ["app", "main"]
