"""A pytest plugin that makes loading a local model an error, to prove that a selection such as
``-m "not models"`` is model-free. Not loaded by default (conftest does not import it): use

    PYTHONPATH=tests python -m pytest -p model_guard --assert=plain -m "not models"

(``scripts/check_markers.sh`` does; ``--assert=plain`` because rewriting asserts of modules
imported after transformers trips CPython 3.11's AST recursion-depth check). Guarded: llama.cpp models in process (``llama_cpp.Llama``),
the llama.cpp server fixture (``llama_server``), and every transformers model or tokenizer
(MiniLM, cross-encoders). Each load raises ``ModelLoadForbidden`` *and* is recorded, so a test
that swallows the error still fails the session (exit status 3).
"""

from __future__ import annotations

from typing import Any

import pytest

SERVER_FIXTURES = frozenset({"llama_server"})


class ModelLoadForbidden(RuntimeError):
    """A test outside the ``models`` marker tried to load a model."""


_violations: list[str] = []
_current: list[str] = ["<collection>"]


def _forbid(what: str) -> None:
    _violations.append(f"{_current[0]}: {what}")
    raise ModelLoadForbidden(f"{what} loaded by {_current[0]}, which is not marked `models`")


def _patch_llama() -> None:
    try:
        import llama_cpp
    except ImportError:  # not installed: nothing can load through it
        return

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        _forbid(f"llama_cpp.Llama({kwargs.get('model_path') or (args[0] if args else '')})")

    llama_cpp.Llama.__init__ = refuse  # type: ignore[method-assign]
    llama_cpp.Llama.__del__ = lambda self: None  # type: ignore[method-assign]  # nothing was built


def _patch_transformers() -> None:
    try:
        from transformers import PreTrainedModel, PreTrainedTokenizerBase
    except ImportError:
        return
    for cls in (PreTrainedModel, PreTrainedTokenizerBase):
        def refuse(klass: Any, name: Any = None, *args: Any, **kwargs: Any) -> None:
            _forbid(f"{klass.__name__}.from_pretrained({name})")

        cls.from_pretrained = classmethod(refuse)  # type: ignore[assignment,method-assign]


# patched on import (``-p model_guard`` imports this early, on a shallow stack: importing
# transformers from inside a pytest hook can hit CPython 3.11's AST recursion-depth check)
_patch_llama()
_patch_transformers()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _current[0] = item.nodeid
    try:
        return (yield)
    finally:
        _current[0] = "<between tests>"


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    if fixturedef.argname in SERVER_FIXTURES:
        _forbid(f"the {fixturedef.argname} fixture (a llama.cpp server)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _violations:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _violations:
        terminalreporter.section("model loads outside the `models` marker")
        for line in _violations:
            terminalreporter.line(line)
    else:
        terminalreporter.line("model_guard: no model was loaded")
