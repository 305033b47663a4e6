"""The hostile probe of issue 19, re-runnable against any checkout: each case runs in its own
child process (so a case that kills its parent kills only that child) with ``PYTHONPATH`` set
to the tree under test, and prints one line saying what happened.

    python benchmarks/security_probe.py --tree /tmp/before --tree . > table.md

prints a markdown table, one column per tree. Cases that run model-written code run it with
the tree's ``run_tests``: on a tree without the sandbox that code runs with the probe's own
privileges, so every case is kept harmless (its writes go to a temporary directory, its
children sleep a few seconds, its output flood is 256 MiB, no fork bomb).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PRELUDE = """
import json, os, resource, socket, subprocess, sys, time
from pathlib import Path
from verifiers._code_tests import run_tests
TMP = Path(sys.argv[1])
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def alive(tag):
    n = 0
    for e in Path('/proc').iterdir():
        try:
            if e.name.isdigit() and tag in (e / 'cmdline').read_bytes().decode('utf-8', 'replace') \\
                    and (e / 'stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z':
                n += 1
        except OSError:
            pass
    return n
def kill_tagged(tag):
    for e in Path('/proc').iterdir():
        try:
            if e.name.isdigit() and tag in (e / 'cmdline').read_bytes().decode('utf-8', 'replace'):
                os.kill(int(e.name), 9)
        except OSError:
            pass
def verdict(code, tests, **kw):
    try:
        return run_tests(code, tests, **kw)
    except Exception as exc:
        return f'{type(exc).__name__}'
"""

CASES: dict[str, str] = {
    "answer writes outside its temp dir": """
        target = TMP / 'escaped'
        v = verdict("def w(p):\\n    open(p, 'w').write('x')\\n    return True\\n", [f"assert w({str(target)!r})"])
        print('written' if target.exists() else 'refused', v)
    """,
    "answer reads /etc/passwd": """
        print(verdict("def r():\\n    return open('/etc/passwd').read()\\n", ["assert 'root' in r()"]))
    """,
    "answer reads a planted ~/.ssh key": """
        key = TMP / 'home' / '.ssh' / 'id_ed25519'
        key.parent.mkdir(parents=True)
        key.write_text('PLANTED')
        print(verdict(f"def r():\\n    return open({str(key)!r}).read()\\n", ["assert r() == 'PLANTED'"]))
    """,
    "answer connects to a listening loopback port": """
        s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); s.settimeout(0.3)
        port = s.getsockname()[1]
        v = verdict(f"import socket\\ndef c():\\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\\n    return True\\n", ['assert c()'])
        try:
            s.accept(); got = 'connected'
        except OSError:
            got = 'no connection'
        print(got, v)
    """,
    "answer forks 40 processes": """
        code = ("import os, time\\ndef f():\\n    n = 0\\n    for _ in range(40):\\n        try:\\n            pid = os.fork()\\n"
                "        except OSError:\\n            continue\\n        if pid == 0:\\n            time.sleep(2)\\n            os._exit(0)\\n"
                "        n += 1\\n    return n\\n")
        print(verdict(code, ['assert f() == 40']), '(True = all 40 forked)')
    """,
    "answer reads the engine's /proc/<pid>/environ": """
        code = "def e(pid):\\n    return open(f'/proc/{pid}/environ', 'rb').read()\\n"
        print(verdict(code, [f"assert b'sk-probe-123' in e({os.getpid()})"]), '(True = key read)')
    """,
    "answer kills the engine (os.kill(getppid(), 9))": """
        v = verdict("import os\\nos.kill(os.getppid(), 9)\\ndef f():\\n    return 1\\n", ['assert f() == 1'])
        print('engine survived', v)
    """,
    "answer leaves a forked orphan": """
        tag = f'{time.time_ns() % 10**6}.{os.getpid()}'
        code = f"import os\\nif os.fork() == 0:\\n    os.execv('/usr/bin/sleep', ['sleep', '{tag}'])\\ndef f():\\n    return 1\\n"
        v = verdict(code, ['assert f() == 1'])
        print(alive(tag), 'orphan(s) running after', v)
        kill_tagged(tag)
    """,
    "answer prints 256 MiB to stdout (engine peak RSS growth)": """
        before = rss_mib()
        v = verdict("import sys\\nfor _ in range(4096):\\n    sys.stdout.write('x' * 65536)\\n", ['assert True'], timeout_s=20)
        print(f'+{rss_mib() - before:.0f} MiB', v)
    """,
    "answer forges a pass: patches json.dumps, prints the result line, os._exit(0)": """
        code = "import json, os\\njson.dumps = lambda *a, **k: '[true]'\\nprint('0 1')\\nprint('end')\\nprint('[true]', flush=True)\\nos._exit(0)\\n"
        print(verdict(code, ['assert False']), '(True = forged)')
    """,
    "2 s run deadline on code tests that take 5 s": """
        import anyio
        from cascade import Cascade, Tier
        from verifiers import AgreementEstimator, AnswerKind
        sys.path.insert(0, sys.argv[2])
        from scripted import Scripted
        slow = "def add(a, b):\\n    while True:\\n        pass\\n"
        tiers = [Tier('small', 's', Scripted(slow), AgreementEstimator(AnswerKind.CODE, min_members=1, run_tests=True, tests_timeout_s=5), 0.5),
                 Tier('large', 'l', Scripted('def add(a, b):\\n    return a + b\\n'), None, None)]
        async def main():
            async with Cascade(tiers, deadline_s=2) as engine:
                return await engine.run('add', metadata={'tests': json.dumps(['assert add(1, 2) == 3'])})
        t = time.monotonic(); r = anyio.run(main)
        print(f'{time.monotonic() - t:.1f} s, stop_reason {r.stop_reason.value}')
    """,
    "lone surrogate prompt (API)": """
        import anyio
        from cascade import Cascade, Tier
        sys.path.insert(0, sys.argv[2])
        from scripted import Scripted
        try:
            anyio.run(lambda: Cascade([Tier('a', 'm', Scripted('x'))]).run('\\udcff')); print('accepted')
        except Exception as exc:
            print(type(exc).__name__)
    """,
    "bytes prompt b'\\\\xff\\\\xfe' (message)": """
        from cascade._request import make_request
        try:
            make_request(b'\\xff\\xfe', 'f'); print('accepted')
        except Exception as exc:
            print(type(exc).__name__ + ': ' + str(exc)[:40])
    """,
    "deadline_s=nan from the API": """
        import anyio
        from cascade import Cascade, Tier
        sys.path.insert(0, sys.argv[2])
        from scripted import Scripted
        try:
            r = anyio.run(lambda: Cascade([Tier('a', 'm', Scripted('x'))]).run('hi', deadline_s=float('nan'))); print('ran:', r.stop_reason.value)
        except Exception as exc:
            print(type(exc).__name__)
    """,
    "price .inf / timeout_s .inf in a policy": """
        from cascade.policy import parse_policy
        out = []
        for field in ('price: {input_per_1m: .inf}', 'timeout_s: .inf'):
            try:
                parse_policy('tiers:\\n  - {name: a, model: m, provider: {kind: replay, data: x}, ' + field + '}\\n'); out.append('accepted')
            except Exception as exc:
                out.append(type(exc).__name__)
        print(', '.join(out))
    """,
    "missing verifier artifact (cascade run)": """
        p = TMP / 'p.yaml'
        p.write_text('tiers:\\n  - {name: a, model: cheap-model, provider: {kind: replay, data: ' + sys.argv[2] + '/fixtures/tiny_routerbench.csv}, threshold: 0.5, estimator: {kind: verifier, artifact: nowhere}}\\n')
        r = subprocess.run([sys.executable, '-c', 'from cascade.cli import main; main()', 'run', '--policy', str(p), '--no-check', 'hi'], capture_output=True, text=True)
        print(f'exit {r.returncode},', 'traceback' if 'Traceback' in r.stderr else f'{len(r.stderr.strip().splitlines())} line(s)')
    """,
    "275-byte YAML alias bomb (load_policy, in process; killed after 60 s)": """
        import threading
        from cascade.policy import load_policy
        text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\\n' + ''.join(
            f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\\n" for p, n in zip('abcdefgh', 'bcdefghi'))
        p = TMP / 'bomb.yaml'; p.write_text(text)
        before = rss_mib(); t = time.monotonic(); out = []
        def load():
            try:
                load_policy(p); out.append('accepted')
            except Exception as exc:
                out.append(type(exc).__name__)
        worker = threading.Thread(target=load, daemon=True); worker.start(); worker.join(60)
        took = time.monotonic() - t
        print(f'{out[0] if out else "still running"} after {took * 1000:.0f} ms, peak RSS +{rss_mib() - before:.0f} MiB', flush=True)
        os._exit(0)
    """,
    "artifact: re-hashed manifest / no meta.json / unlisted file / absolute path / deep manifest": """
        import hashlib, numpy as np
        from verifiers import AnswerKind, load_agreement
        from verifiers._agreement import AgreementModel
        from verifiers._trained import Calibration, CalibrationMap
        def fresh(name):
            return AgreementModel(('a', 'b'), np.zeros(6), 0.0, CalibrationMap(Calibration.PLATT), AnswerKind.CHOICE).save(TMP / name)
        def manifest(d, change):
            m = json.loads((d / 'manifest.json').read_text()); change(m); (d / 'manifest.json').write_text(json.dumps(m))
        def attempt(d):
            try:
                load_agreement(d); return 'accepted'
            except Exception as exc:
                return type(exc).__name__
        out = []
        d = fresh('rehash'); (d / 'meta.json').write_text((d / 'meta.json').read_text().replace('0.0', '5.0'))
        manifest(d, lambda m: m['files'].update({k: hashlib.sha256((d / k).read_bytes()).hexdigest() for k in m['files']}))
        out.append(attempt(d))
        d = fresh('nometa'); manifest(d, lambda m: m['files'].pop('meta.json')); out.append(attempt(d))
        d = fresh('unlisted'); (d / 'evil.py').write_text('x'); out.append(attempt(d))
        d = fresh('absolute'); manifest(d, lambda m: m['files'].update({'/etc/hostname': hashlib.sha256(open('/etc/hostname', 'rb').read()).hexdigest()})); out.append(attempt(d))
        d = fresh('deep'); (d / 'manifest.json').write_text('{"files": ' + '[' * 100000 + ']' * 100000 + '}'); out.append(attempt(d))
        print(' / '.join(out))
    """,
}


def run_case(tree: Path, body: str) -> str:
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        script = PRELUDE + textwrap.dedent(body)
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
               "PROBE_SECRET": "sk-probe-123"}  # in the probe's initial environment
        try:
            done = subprocess.run([sys.executable, "-c", script, tmp, str(tree / "tests")], cwd=tmp,
                                  env=env, capture_output=True, text=True, timeout=180, check=False)
        except subprocess.TimeoutExpired:
            return "probe timed out (180 s)"
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 and not lines:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            return f"probe process died (exit {done.returncode}): {last[:80]}"
        return lines[-1] if lines else "(no output)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, required=True,
                        help="a checkout to probe (repeat: one column each)")
    parser.add_argument("--case", help="only the cases whose name contains this")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree]
    print("| case | " + " | ".join(str(t) for t in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for name, body in CASES.items():
        if args.case and args.case not in name:
            continue
        cells = [run_case(tree, body).replace("|", "\\|") for tree in trees]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
