"""Model-written code runs only inside bubblewrap (``bwrap``), never in the engine's process.

One code answer and its tests run as two sandboxes, each its own ``bwrap``:

- **answer**: a bare interpreter (``python -I -S``) that runs the answer once, then serves
  calls on its functions and objects over two pipes (``_sandbox_harness.serve_answer``);
- **tests**: a second bare interpreter that runs each test statement with the answer's
  names as proxies forwarding to the answer's process, and writes one verdict line per
  test to its stdout, which the engine reads.

The answer never runs in the process that decides, so patching ``json.dumps``, printing a
fake verdict or calling ``os._exit(0)`` cannot forge a pass: the answer's replies decode to
plain data (numbers, strings, containers) or opaque handles, and the tests process compares
them itself.

Each sandbox: new PID, network (loopback only, nothing listening), IPC, UTS, cgroup and mount
namespaces; a new root holding only ``/usr`` (and its ``/bin``, ``/lib`` links) and the
Python installation, read-only; a private size-capped tmpfs on ``/tmp`` as the only writable
place; its own ``/proc`` (the engine and every other process are invisible); ``/dev``
minimal; the environment cleared; ``--die-with-parent`` and ``--new-session``. Inside:
rlimits on CPU seconds, address space, file size, open files, processes, core dumps.

Who the code runs as: started by an unprivileged user, bwrap adds a user namespace
(``--unshare-user --disable-userns``) and the process limit counts the sandbox's processes in
it. Started by root, a user namespace would map the sandbox to the real root user — owner of
nearly every file, and exempt from ``RLIMIT_NPROC`` (measured: a fork loop made 40 of 40
processes under a limit of 16) — so instead bwrap runs without one and ``setpriv`` switches to
a random unprivileged uid (no groups, no capabilities, no new privileges) before Python
starts; that uid owns nothing on the host and its process limit holds (15 of 40).

The engine reads the answer's output with a hard byte cap (``output_bytes``; beyond it the
sandbox is killed) and kills both sandboxes' process groups on return, on timeout and on
cancellation; killing a sandbox's first process tears down its PID namespace, orphans
included. Where ``bwrap`` is missing or cannot create namespaces, ``SandboxUnavailableError``
names the package; nothing is ever run unsandboxed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

from verifiers._types import EstimatorError

__all__ = ["Limits", "SandboxUnavailableError", "bwrap_command", "require_sandbox", "run_sandboxed"]

_HARNESS = (Path(__file__).with_name("_sandbox_harness.py")).read_text(encoding="utf-8")
_PACKAGE = "bubblewrap"
_UID_BASE = 1_500_000_000  # random unprivileged uids for root-started sandboxes
_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxUnavailableError(EstimatorError):
    """Model-written code cannot be run safely here (no usable ``bwrap``); nothing was run."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one answer may use. ``timeout_s`` is wall time for the answer and all its tests."""

    timeout_s: float = 5.0
    memory_bytes: int = 512 << 20  # address space per process
    processes: int = 16  # RLIMIT_NPROC for the sandbox's uid
    file_bytes: int = 1 << 20  # largest file it may write
    open_files: int = 64
    tmpfs_bytes: int = 16 << 20  # all it may write, together
    output_bytes: int = 64 << 10  # stdout + stderr; beyond: killed, every test fails

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.timeout_s < 3600):
            raise ValueError("timeout_s must be in (0, 3600)")
        if min(self.memory_bytes, self.processes, self.file_bytes, self.open_files,
               self.tmpfs_bytes, self.output_bytes) < 1:
            raise ValueError("sandbox limits must be positive")


def _interpreter() -> tuple[str, str]:
    """The real interpreter (a venv's ``python`` is a link to it) and its installation."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def _filesystem(prefix: str, tmpfs_bytes: int) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    return args + ["--proc", "/proc", "--dev", "/dev", "--size", str(tmpfs_bytes),
                   "--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/tmp"]


def bwrap_command(bwrap: str, argv: Sequence[str], limits: Limits, *,
                  uid: int | None = None) -> list[str]:
    """The full command line for ``argv`` (a program under ``/usr`` or the Python
    installation). ``uid``: started as root, switch to this unprivileged uid (see above)."""
    _, prefix = _interpreter()
    common = ["--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", _PATH,
              "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", "/tmp", "--hostname", "sandbox",
              *_filesystem(prefix, limits.tmpfs_bytes)]
    if uid is None:
        return [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", *common, "--", *argv]
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin") or "/usr/bin/setpriv"
    return [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", *common, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--", setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]


_probed: dict[str, str] = {}


def require_sandbox() -> str:
    """The ``bwrap`` path, after checking once per process that it can start a sandbox with
    this interpreter; else ``SandboxUnavailableError`` naming the package."""
    if "bwrap" in _probed:
        return _probed["bwrap"]
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError(
            f"running model-written code needs the sandbox tool bwrap (Debian/Ubuntu package "
            f"`{_PACKAGE}`: apt-get install {_PACKAGE}); refusing to run it unsandboxed")
    python, _ = _interpreter()
    command = bwrap_command(bwrap, [python, "-I", "-S", "-c", "pass"], Limits(),
                            uid=_uid() if os.geteuid() == 0 else None)
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailableError(f"bwrap ({bwrap}) could not start a sandbox ({exc}); "
                                      "refusing to run model-written code unsandboxed") from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip()[:300]
        raise SandboxUnavailableError(
            f"bwrap ({bwrap}) cannot create a sandbox here ({why or f'exit {done.returncode}'}); "
            f"it needs user or PID namespaces (package `{_PACKAGE}`, and a kernel or container "
            "that allows them); refusing to run model-written code unsandboxed")
    _probed["bwrap"] = bwrap
    return bwrap


def _uid() -> int:
    return _UID_BASE + secrets.randbelow(1 << 24)


def _harness_argv(role: str, limits: Limits, read_fd: int, write_fd: int) -> list[str]:
    python, _ = _interpreter()
    cpu = max(1, int(limits.timeout_s + 0.999))
    return [python, "-I", "-S", "-X", "utf8", "-c", _HARNESS, role, str(cpu),
            str(limits.memory_bytes), str(limits.processes), str(limits.file_bytes),
            str(limits.open_files), str(read_fd), str(write_fd)]


class _Overflow(Exception):
    pass


async def _drain(stream: ByteReceiveStream, cap: int) -> None:
    """Read and discard a sandbox's output; ``_Overflow`` beyond ``cap`` bytes."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > cap:
            raise _Overflow()


async def _verdicts(stream: ByteReceiveStream, count: int) -> tuple[bool, ...] | None:
    """The tests sandbox's verdict lines (``<index> <0|1>`` each, then ``end``), or None if
    the output is anything else."""
    cap = 16 * (count + 1) + 64
    data = b""
    async for chunk in stream:
        data += chunk
        if len(data) > cap:
            return None
        if data.endswith(b"end\n"):
            break
    lines = data.decode("ascii", "replace").splitlines()
    expected = [f"{i} 0" for i in range(count)]
    if len(lines) != count + 1 or lines[-1] != "end":
        return None
    out = []
    for line, zero in zip(lines, expected):
        if line not in (zero, zero[:-1] + "1"):
            return None
        out.append(line.endswith(" 1"))
    return tuple(out)


async def _feed(process: Process, payload: bytes) -> None:
    assert process.stdin is not None
    try:
        await process.stdin.send(payload)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the sandbox ended early; what it did is judged from its verdicts
    await process.stdin.aclose()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):  # a kernel without CONFIG_PROC_CHILDREN: scan
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        return found


async def _kill(process: Process) -> None:
    """SIGKILL the sandbox's first process (PID 1 of its namespace: the kernel kills every
    other process in the namespace before it is gone), wait for bwrap to see it go, and only
    then reap bwrap: when this returns, nothing of the sandbox runs any more."""
    if process.returncode is None:
        for child in _children(process.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        with anyio.move_on_after(2):
            await process.wait()
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        with anyio.move_on_after(5):
            await process.wait()
    await process.aclose()


async def run_sandboxed(code: str, tests: Sequence[str], limits: Limits) -> tuple[bool, ...] | None:
    """Verdicts of ``tests`` on ``code``, or None when the answer did not finish within the
    limits (timeout, output beyond the cap, a broken sandbox)."""
    bwrap = _probed.get("bwrap") or await anyio.to_thread.run_sync(require_sandbox)
    root = os.geteuid() == 0
    answer_in, tests_out = os.pipe()
    tests_in, answer_out = os.pipe()
    open_fds = [answer_in, answer_out, tests_in, tests_out]
    spawned: list[Process] = []
    try:
        for role, fds in (("answer", (answer_in, answer_out)), ("tests", (tests_in, tests_out))):
            argv = bwrap_command(bwrap, _harness_argv(role, limits, *fds), limits,
                                 uid=_uid() if root else None)
            spawned.append(await anyio.open_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if role == "answer" else subprocess.DEVNULL,
                pass_fds=fds, start_new_session=True, env={}))
        _close(open_fds)  # the sandboxes hold the pipes now: EOF when one of them ends
        answer, tester = spawned
        return await _judge(answer, tester, code, tests, limits)
    finally:
        _close(open_fds)
        with anyio.CancelScope(shield=True):
            for process in spawned:
                await _kill(process)


def _close(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


async def _judge(answer: Process, tester: Process, code: str, tests: Sequence[str],
                 limits: Limits) -> tuple[bool, ...] | None:
    assert answer.stdout is not None and tester.stdout is not None
    result: tuple[bool, ...] | None = None
    with anyio.move_on_after(limits.timeout_s):
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_feed, answer, json.dumps({"code": code}).encode())
                group.start_soon(_feed, tester, json.dumps({"tests": list(tests)}).encode())
                group.start_soon(_drain, answer.stdout, limits.output_bytes)
                result = await _verdicts(tester.stdout, len(tests))
                group.cancel_scope.cancel()
        except* _Overflow:
            result = None
    return result
