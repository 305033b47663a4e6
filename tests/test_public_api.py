"""The public face: ``__all__`` lists every public name, and only those."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["cascade", "cascade.policy", "cascade.providers", "cascade.routing", "cascade.telemetry", "verifiers",
           "cascade.errors", "cascade.resilience", "cascade.state", "cascade.server", "cascade.bench",
           "cascade.tuning"]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_complete_and_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    public = {n for n in vars(module) if not n.startswith("_")}
    imported_modules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    typing_helpers = {"annotations", "TYPE_CHECKING", "ClassVar", "Sequence", "Path", "Attempt"}
    missing = public - exported - imported_modules - typing_helpers
    assert not missing, f"{name}: public but not in __all__: {sorted(missing)}"
    assert all(hasattr(module, n) for n in exported), f"{name}: __all__ names a missing attribute"


def test_verifiers_never_imports_cascade() -> None:
    import subprocess
    import sys

    code = "import sys, verifiers; print(any(m == 'cascade' or m.startswith('cascade.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_has_no_side_effects() -> None:
    import subprocess
    import sys

    code = ("import os, sys; before = dict(os.environ); import cascade; "
            "print(dict(os.environ) == before, 'llama_cpp' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
