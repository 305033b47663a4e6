"""Code answers compared by running shared tests, where the request provides them.

Each answer's code runs once, with every test (``assert`` statements), in a separate Python
process (``python -I -S``: no user site, no environment variables, an empty temporary working
directory) under resource limits (CPU seconds, address space, file size, no child processes)
and a wall-clock timeout. The result is one pass/fail flag per test. Two answers agree when they
pass exactly the same tests and at least one; an answer that passes none (or does not run)
counts as having no answer.

This is isolation against accidents (runaway loops, memory blow-ups, stray files), not a
security sandbox: model-written code can still read files and open sockets. Turn it on
(``AgreementEstimator(run_tests=True)``) only where running that code is acceptable, or run
the engine in a container without network and secrets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from verifiers._agreement import AGREE, DISAGREE, UNKNOWN
from verifiers._normalise import _FENCE

_HARNESS = r"""
import json, resource, sys
cpu, memory = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
payload = json.loads(sys.stdin.read())
scope = {"__name__": "__answer__"}
try:
    exec(compile(payload["code"], "<answer>", "exec"), scope)
except (Exception, SystemExit):  # the answer's own failure, exit() included
    print(json.dumps([False] * len(payload["tests"])))
    raise SystemExit(0)
passed = []
for test in payload["tests"]:
    try:
        exec(compile(test, "<test>", "exec"), dict(scope))
        passed.append(True)
    except (Exception, SystemExit):  # the answer's own failure, exit() included
        passed.append(False)
print(json.dumps(passed))
"""


def code_of(text: str) -> str:
    """The first fenced block, else the whole text."""
    found = _FENCE.search(text)
    return found.group(1) if found else text


def run_tests(code: str, tests: Sequence[str], *, timeout_s: float = 5.0,
              memory_bytes: int = 512 << 20) -> tuple[bool, ...]:
    """Pass/fail per test for ``code`` (all False when it does not run or times out)."""
    if not tests:
        return ()
    payload = json.dumps({"code": code, "tests": list(tests)})
    with tempfile.TemporaryDirectory(prefix="cascade-code-") as folder:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-S", "-c", _HARNESS, str(max(1, int(timeout_s))), str(memory_bytes)],
                input=payload, capture_output=True, text=True, timeout=timeout_s + 1.0,
                cwd=folder, env={}, check=False)
        except subprocess.TimeoutExpired:
            return (False,) * len(tests)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return (False,) * len(tests)
    if not isinstance(result, list) or len(result) != len(tests):
        return (False,) * len(tests)
    return tuple(bool(r) for r in result)


def agreement_by_tests(texts: Sequence[str | None], tests: Sequence[str], *,
                   timeout_s: float = 5.0) -> np.ndarray:
    """Pairwise agreement (as ``agreement_matrix``) by the tests each answer passes."""
    cache: dict[str, tuple[bool, ...]] = {}
    results: list[tuple[bool, ...] | None] = []
    for text in texts:
        if text is None:
            results.append(None)
            continue
        code = code_of(text)
        if code not in cache:
            cache[code] = run_tests(code, tests, timeout_s=timeout_s)
        results.append(cache[code] if any(cache[code]) else None)
    n = len(texts)
    out = np.full((n, n), UNKNOWN, dtype=np.int8)
    for i in range(n):
        for j in range(n):
            if results[i] is not None and results[j] is not None:
                out[i, j] = AGREE if results[i] == results[j] else DISAGREE
    return out
