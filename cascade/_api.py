"""``cascade.run`` and ``cascade.run_sync``: one call, one policy, resources closed before it
returns."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from cascade._request import PromptLike
from cascade.engine import Cascade
from cascade.errors import InvalidFeatureError, PolicyNotFoundError
from cascade.types import Result

POLICIES_ENV = "CASCADE_POLICIES_DIR"
_FEATURE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def bundled_policies_dir() -> Path:
    """The policies shipped with the package (in a wheel), or the repository's ``policies/``."""
    here = Path(__file__).resolve().parent
    packaged = here / "_policies"
    return packaged if packaged.is_dir() else here.parent / "policies"


def policies_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """Argument, else ``$CASCADE_POLICIES_DIR``, else the bundled policies."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get(POLICIES_ENV)
    return Path(env) if env else bundled_policies_dir()


def policy_path(feature: str, directory: str | os.PathLike[str] | None = None) -> Path:
    if not _FEATURE.match(feature):
        raise InvalidFeatureError(feature)
    path = policies_dir(directory) / f"{feature}.yaml"
    if not path.is_file():
        raise PolicyNotFoundError(feature, path)
    return path


async def run(prompt: PromptLike, *, feature: str = "default",
              policies: str | os.PathLike[str] | None = None,
              metadata: Mapping[str, str] | None = None,
              deadline_s: float | None = None, max_tokens: int | None = None,
              temperature: float | None = None, stop: Sequence[str] | None = None) -> Result:
    """Run ``prompt`` (a string or a list of ``{role, content}`` messages) through the
    feature's policy. Loads the policy and its models for this call and closes them after;
    for many calls keep a ``Cascade`` open instead. ``max_tokens``, ``temperature`` and
    ``stop`` override every tier's own settings for this request."""
    async with Cascade.from_yaml(policy_path(feature, policies)) as engine:
        return await engine.run(prompt, metadata=metadata, deadline_s=deadline_s,
                                max_tokens=max_tokens, temperature=temperature, stop=stop)


def run_sync(prompt: PromptLike, *, feature: str = "default",
             policies: str | os.PathLike[str] | None = None,
             metadata: Mapping[str, str] | None = None,
             deadline_s: float | None = None, max_tokens: int | None = None,
             temperature: float | None = None, stop: Sequence[str] | None = None) -> Result:
    """``run`` for code without an event loop (scripts) and for code inside one that cannot
    ``await`` (a notebook cell that does not): there it runs on a worker thread with an event
    loop of its own, and this call blocks until the result is ready."""
    call = functools.partial(run, prompt, feature=feature, policies=policies, metadata=metadata,
                             deadline_s=deadline_s, max_tokens=max_tokens,
                             temperature=temperature, stop=stop)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: run one here
        return anyio.run(call)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cascade-run-sync") as pool:
        return pool.submit(anyio.run, call).result()
