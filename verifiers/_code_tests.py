"""Code answers compared by running shared tests, where the request provides them.

Each answer's code runs once, in a bubblewrap sandbox (``verifiers._sandbox``: namespaces, a
read-only minimal root, a private tmpfs, no network, no view of the engine's processes, an
unprivileged user, rlimits, a byte cap on its output), and every test (``assert``
statements) runs in a second sandbox that calls the answer's functions through a pipe and
decides each verdict itself. The result is one pass/fail flag per test. Two answers agree when
they pass exactly the same tests and at least one; an answer that passes none (or does not
run, or runs past its timeout, or prints more than the cap) counts as having no answer.

Where ``bwrap`` is missing or cannot create namespaces, ``SandboxUnavailableError`` (naming
the Debian package ``bubblewrap``); the code is never run unsandboxed. The tests see the
answer's values as plain data (numbers, strings, containers) and its functions, classes and
objects as proxies; a test cannot hand the answer a function of its own (a ``key=lambda``
argument fails that test). What remains possible, as with any tests: an answer may return an
object whose ``==`` always says yes (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import numpy as np

from verifiers._agreement import AGREE, DISAGREE, UNKNOWN
from verifiers._normalise import _FENCE
from verifiers._sandbox import Limits, run_sandboxed

_PARALLEL = 2  # answers' sandboxes at once (each is two processes)


def code_of(text: str) -> str:
    """The first fenced block, else the whole text."""
    found = _FENCE.search(text)
    return found.group(1) if found else text


async def run_tests_async(code: str, tests: Sequence[str], *, timeout_s: float = 5.0,
                          memory_bytes: int = 512 << 20) -> tuple[bool, ...]:
    """Pass/fail per test for ``code`` (all False when it does not run, times out or floods
    its output). Cancelling the caller kills the sandboxes."""
    if not tests:
        return ()
    verdicts = await run_sandboxed(code, tests, Limits(timeout_s, memory_bytes))
    return (False,) * len(tests) if verdicts is None else verdicts


def run_tests(code: str, tests: Sequence[str], *, timeout_s: float = 5.0,
              memory_bytes: int = 512 << 20) -> tuple[bool, ...]:
    """``run_tests_async`` for callers without an event loop."""
    return anyio.run(lambda: run_tests_async(code, tests, timeout_s=timeout_s,
                                             memory_bytes=memory_bytes))


async def results_by_tests(texts: Sequence[str | None], tests: Sequence[str], *,
                           timeout_s: float = 5.0) -> list[tuple[bool, ...] | None]:
    """Each text's verdicts (None: no text, or it passes no test); equal code runs once."""
    codes = {code_of(t) for t in texts if t is not None}
    verdicts: dict[str, tuple[bool, ...]] = {}
    limiter = anyio.CapacityLimiter(_PARALLEL)

    async def one(code: str) -> None:
        async with limiter:
            verdicts[code] = await run_tests_async(code, tests, timeout_s=timeout_s)

    async with anyio.create_task_group() as group:
        for code in sorted(codes):
            group.start_soon(one, code)
    out: list[tuple[bool, ...] | None] = []
    for text in texts:
        found = None if text is None else verdicts[code_of(text)]
        out.append(found if found is not None and any(found) else None)
    return out


def matrix_of(results: Sequence[tuple[bool, ...] | None]) -> np.ndarray:
    """Pairwise agreement (as ``agreement_matrix``) from each answer's verdicts (pure)."""
    n = len(results)
    out = np.full((n, n), UNKNOWN, dtype=np.int8)
    for i in range(n):
        for j in range(n):
            if results[i] is not None and results[j] is not None:
                out[i, j] = AGREE if results[i] == results[j] else DISAGREE
    return out


async def agreement_by_tests_async(texts: Sequence[str | None], tests: Sequence[str], *,
                                   timeout_s: float = 5.0) -> np.ndarray:
    """Pairwise agreement (as ``agreement_matrix``) by the tests each answer passes."""
    return matrix_of(await results_by_tests(texts, tests, timeout_s=timeout_s))


def agreement_by_tests(texts: Sequence[str | None], tests: Sequence[str], *,
                       timeout_s: float = 5.0) -> np.ndarray:
    """``agreement_by_tests_async`` for callers without an event loop."""
    return anyio.run(lambda: agreement_by_tests_async(texts, tests, timeout_s=timeout_s))
