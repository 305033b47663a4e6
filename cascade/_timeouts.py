"""Per-call timeouts on the request path.

``timeout(seconds)`` is ``asyncio.timeout``: an async context manager that raises
``TimeoutError`` when the block runs longer (``inf``: no limit, no timer). Every model try and
every estimate has one, so its cost counts: on this 2-core VM ``anyio.fail_after`` took
13–18 µs to enter and leave, ``asyncio.timeout`` 7–10 µs (``benchmarks/seam_overhead.py
--scopes``). cascade runs on asyncio (uvloop included) only, and
``asyncio.timeout`` uses the task's cancel/uncancel counts, so it composes with anyio's cancel
scopes around it: an outer scope's cancellation stays a cancellation, only this block's own
expiry becomes ``TimeoutError``. Run-level deadlines keep anyio's ``move_on_after``."""

from __future__ import annotations

import asyncio
import math
from contextlib import AbstractAsyncContextManager


def timeout(seconds: float) -> AbstractAsyncContextManager[object]:
    """``async with timeout(s):`` — ``TimeoutError`` after ``s`` seconds (``inf``: never)."""
    return asyncio.timeout(None if math.isinf(seconds) else seconds)


__all__ = ["timeout"]
