"""Model-written code runs only inside bubblewrap: every escape the probe found now fails
safely, the engine survives, and nothing is left running (issue 19 §1).

Each test plants a unique marker (in the answer's code or in the sandbox's memory limit,
which appears on the sandbox's command line) and checks /proc for it afterwards."""

from __future__ import annotations

import json
import os
import resource
import secrets
import socket
import time
from pathlib import Path

import anyio
import pytest
from scripted import Scripted

from cascade import Cascade, StopReason, Tier
from verifiers import AgreementEstimator, AnswerKind
from verifiers._code_tests import run_tests
from verifiers._sandbox import Limits, SandboxUnavailableError, require_sandbox, run_sandboxed

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]


def marked_memory() -> int:
    """A memory limit no other sandbox uses: it shows on the sandbox's command line."""
    return (512 << 20) + secrets.randbelow(1 << 20)


def running_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def sandboxed(code: str, tests: list[str], timeout_s: float = 5.0) -> tuple[tuple[bool, ...], str]:
    memory = marked_memory()
    return run_tests(code, tests, timeout_s=timeout_s, memory_bytes=memory), str(memory)


def test_a_well_behaved_answer_still_passes_its_tests() -> None:
    verdicts, marker = sandboxed(ADD + "class Box:\n    def __init__(self, v):\n        self.v = v\n"
                                 "    def get(self):\n        return [self.v, (1, 2.5), {'k': None}]\n",
                                 ADD_TESTS + ["assert Box(3).get() == [3, (1, 2.5), {'k': None}]",
                                              "assert add(1, 1) == 3"])
    assert verdicts == (True, True, True, False)
    assert running_with(marker) == []


def test_failing_tests_are_verdicts_and_an_exotic_exception_fails_closed() -> None:
    verdicts, _ = sandboxed(ADD, ["raise SystemExit(0)", "assert add(1, 2) == 3", "import sys\nsys.exit(1)",
                                  "raise KeyboardInterrupt", "1 / 0"])
    assert verdicts == (False, True, False, False, False)  # each failure is its own verdict
    odd, _ = sandboxed(ADD, ["assert add(1, 2) == 3", "class Odd(BaseException):\n    pass\nraise Odd()"])
    assert odd == (False, False)  # the tests sandbox ended without "end": no test can pass


def test_the_answer_cannot_write_outside_its_private_tmp(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    token = secrets.token_hex(4)
    system, here = Path(f"/usr/pwned-{token}.txt"), Path.cwd() / f"pwned-{token}.txt"
    code = ("def write(path):\n    with open(path, 'w') as f:\n        f.write('pwned')\n    return True\n"
            "def write_tmp():\n    with open('/tmp/mine.txt', 'w') as f:\n        f.write('ok')\n"
            "    return open('/tmp/mine.txt').read()\n")
    tests = [f"assert write({str(target)!r})", f"assert write({str(system)!r})",
             f"assert write({str(here)!r})", "assert write_tmp() == 'ok'"]
    verdicts, _ = sandboxed(code, tests)
    assert verdicts == (False, False, False, True)
    assert not target.exists() and not system.exists() and not here.exists()


def test_the_answer_cannot_read_secrets_from_files(tmp_path: Path) -> None:
    home = tmp_path / "home" / ".ssh"
    home.mkdir(parents=True)
    (home / "id_ed25519").write_text("PLANTED-PRIVATE-KEY")
    code = "def read(path):\n    return open(path).read()\n"
    tests = [f"assert 'PLANTED' in read({str(home / 'id_ed25519')!r})",
             "assert len(read('/etc/shadow')) > 0", "assert len(read('/etc/passwd')) > 0",
             "assert len(read('/root/.bashrc')) >= 0"]
    verdicts, _ = sandboxed(code, tests)
    assert verdicts == (False, False, False, False)


def test_the_answer_cannot_open_a_socket_to_a_listening_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        code = ("import socket\ndef connect(port):\n"
                "    with socket.create_connection(('127.0.0.1', port), timeout=1) as s:\n"
                "        s.sendall(b'leak')\n    return True\n")
        verdicts, _ = sandboxed(code, [f"assert connect({port})"])
        assert verdicts == (False,)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever connected


def test_the_answer_cannot_read_the_engines_environment() -> None:
    # /proc/<pid>/environ shows the environment the engine started with: take a real entry
    entry = next(e for e in Path(f"/proc/{os.getpid()}/environ").read_bytes().split(b"\0")
                 if b"=" in e and e.split(b"=")[0] not in (b"PATH", b"LANG", b"HOME"))
    secret = entry.decode("utf-8", "replace")
    code = ("import os\ndef environ_of(pid):\n    return open(f'/proc/{pid}/environ', 'rb').read()\n"
            "def any_environ():\n    out = b''\n    for pid in os.listdir('/proc'):\n"
            "        if pid.isdigit():\n            try:\n"
            "                out += open(f'/proc/{pid}/environ', 'rb').read()\n"
            "            except OSError:\n                pass\n    return out + repr(os.environ).encode()\n")
    tests = [f"assert {entry!r} in environ_of({os.getpid()})",
             f"assert {entry!r} in environ_of({os.getppid()})",
             f"assert {entry!r} in any_environ()",
             f"assert {secret.split('=')[0].encode()!r} + b'=' not in any_environ()"]
    verdicts, _ = sandboxed(code, tests)
    assert verdicts == (False, False, False, True)


def test_the_answer_cannot_kill_the_engine() -> None:
    code = (f"import os, signal\nfor pid in (os.getppid(), {os.getpid()}, 1):\n    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n" + ADD)
    verdicts, marker = sandboxed(code, ADD_TESTS)
    assert verdicts == (True, True)  # we are still here, and the answer still ran
    assert running_with(marker) == []


def test_forked_children_and_orphans_do_not_outlive_the_run() -> None:
    tag = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"  # sleep's argument: a marker
    code = ("import os\ndef spawn(n):\n    made = 0\n    for _ in range(n):\n        try:\n"
            "            pid = os.fork()\n        except OSError:\n            continue\n"
            f"        if pid == 0:\n            os.execv('/usr/bin/sleep', ['sleep', '{tag}'])\n"
            "        made += 1\n    return made\n"
            "spawn(1)  # an orphan left behind at import\n" + ADD)
    verdicts, marker = sandboxed(code, ["assert spawn(40) == 40", "assert spawn(1) >= 0"] + ADD_TESTS)
    assert verdicts == (False, True, True, True)  # the process limit stopped the 40
    assert running_with(tag) == [] and running_with(marker) == []


def test_a_fork_bomb_is_contained_and_killed_at_the_timeout() -> None:
    code = ("import os\ndef bomb():\n    while True:\n        try:\n            os.fork()\n"
            "        except OSError:\n            pass\n" + ADD)
    started = time.monotonic()
    verdicts, marker = sandboxed(code, ADD_TESTS + ["assert bomb()"], timeout_s=1.5)
    assert verdicts == (False, False, False)  # it did not finish: no verdicts count
    assert time.monotonic() - started < 5
    assert running_with(marker) == []


def test_a_flood_of_output_is_capped_and_the_engine_memory_stays_flat() -> None:
    code = ("import sys\nchunk = 'x' * (1 << 16)\nfor _ in range(1 << 14):  # 1 GiB\n"
            "    sys.stdout.write(chunk)\n" + ADD)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    started = time.monotonic()
    verdicts, marker = sandboxed(code, ADD_TESTS)
    assert verdicts == (False, False)  # killed past the output cap
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024
    assert running_with(marker) == []


@pytest.mark.parametrize("forgery", [  # each one forged a pass for the old in-process harness
    "import json, os, sys\njson.dumps = lambda *a, **k: '[true, true]'\nprint('[true, true]')\n"
    "sys.stdout.flush()\nos._exit(0)\n",
    "import os\nfor fd in range(1, 64):\n    try:\n        os.write(fd, b'0 1\\n1 1\\nend\\n[true, true]\\n')\n"
    "    except OSError:\n        pass\nos._exit(0)\n",
    "import builtins\nbuiltins.exec = lambda *a, **k: None  # every test 'runs' without failing\n",
    "import atexit\natexit.register(lambda: print('[true, true]'))\nraise SystemExit(0)\n",
])
def test_the_answer_cannot_forge_a_pass(forgery: str) -> None:
    verdicts, marker = sandboxed(forgery, ["assert False", "assert 1 == 2"])
    assert verdicts == (False, False)
    assert running_with(marker) == []


def test_an_endless_loop_is_killed_at_the_timeout() -> None:
    started = time.monotonic()
    verdicts, marker = sandboxed("while True:\n    pass\n", ADD_TESTS, timeout_s=1)
    assert verdicts == (False, False)
    assert time.monotonic() - started < 3
    assert running_with(marker) == []


def test_without_bwrap_nothing_runs_and_the_error_names_the_package(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import verifiers._sandbox as sandbox

    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on this PATH
    proof = tmp_path / "ran"
    with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
        run_tests(f"open({str(proof)!r}, 'w').close()\n" + ADD, ADD_TESTS)
    assert not proof.exists()
    with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
        require_sandbox()


def test_a_bwrap_that_cannot_make_namespaces_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    import verifiers._sandbox as sandbox

    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(SandboxUnavailableError, match="No permissions to create new namespace"):
        run_tests(ADD, ADD_TESTS)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        Limits(timeout_s=float("nan"))
    with pytest.raises(ValueError):
        Limits(output_bytes=0)


@pytest.mark.anyio
async def test_cancelling_kills_the_sandboxes() -> None:
    memory = marked_memory()
    slow = "def add(a, b):\n    while True:\n        pass\n"
    with anyio.move_on_after(1):
        await run_sandboxed(slow, ADD_TESTS, Limits(timeout_s=10, memory_bytes=memory))
    assert running_with(str(memory)) == []


@pytest.mark.anyio
async def test_a_run_deadline_stops_code_tests_and_kills_them() -> None:
    slow = "def add(a, b):\n    while True:\n        pass\n"
    estimator = AgreementEstimator(AnswerKind.CODE, min_members=1, run_tests=True,
                                   tests_timeout_s=10)
    tiers = [Tier("small", "s", Scripted(slow), estimator, 0.5),
             Tier("large", "l", Scripted(ADD), None, None)]
    before = set(_sandbox_pids())
    started = time.monotonic()
    async with Cascade(tiers, deadline_s=2) as engine:
        result = await engine.run("write add", metadata={"tests": json.dumps(ADD_TESTS)})
    elapsed = time.monotonic() - started
    assert result.stop_reason is StopReason.DEADLINE and not result.accepted
    assert result.answer == slow and elapsed < 3.5, elapsed
    assert set(_sandbox_pids()) - before == set()


def _sandbox_pids() -> list[int]:
    """Live processes of sandboxes: bwrap, or the harness (``-I -S -X utf8 -c``)."""
    return running_with("bwrap --") + running_with("-I -S -X utf8 -c")
