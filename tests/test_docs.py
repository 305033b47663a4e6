"""Every snippet in the user docs runs: python blocks are executed, console blocks' ``$ cascade``
commands run against the bundled default or the policies the page writes, yaml blocks are
validated (and written to a file where the page says so).

Conventions in the Markdown (HTML comments, invisible on the rendered page):

- ``<!-- file: NAME -->`` before a block writes it to NAME in the page's working folder.
- ``# exit N`` at the end of a console command: the exit code it must have (default 0).
- A page that loads the local models says ``<!-- docs-test: models -->``; a page whose remote
  tier should talk to a real OpenAI-compatible server (the llama.cpp server fixture, on
  loopback) says ``<!-- docs-test: openai-server -->``; OTLP export is tested against a real
  OTLP/HTTP receiver on loopback with ``<!-- docs-test: otlp-receiver -->``.

Not run here: the two install commands (they build llama.cpp for ten minutes; CI runs them
first: .ci/run) and the default's calibration, whose published table is instead reproduced
from its saved answers below.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cascade
from cascade.cli import app
from cascade.policy import parse_policy

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/quickstart.md", "docs/tutorial.md", "docs/howto-remote-tier.md",
         "docs/howto-recorded-data.md", "docs/tracing.md", "docs/policy.md",
         "docs/default-policy.md", "docs/observability.md"]
# the set-up commands (CI runs them) and the default's calibration (minutes of model calls;
# test_the_published_calibration_table_is_reproduced re-scores its saved answers)
NOT_RUN = re.compile(r"^(\./scripts/install\.sh|(OMP_WAIT_POLICY=PASSIVE nice )?\.venv/bin/python "
                     r"benchmarks/default_calibration\.py)")
_FENCE = re.compile(r"(?:<!-- file: (?P<file>[^ ]+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
                    re.DOTALL)
_EXIT = re.compile(r"\s+# exit (\d+)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    file: str | None


def blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [Block(m["lang"], m["body"], m["file"]) for m in _FENCE.finditer(text)]


def directives(page: str) -> set[str]:
    return set(re.findall(r"<!-- docs-test: ([\w-]+) -->", (ROOT / page).read_text()))


def test_every_page_has_snippets_and_no_lab_notebook_links() -> None:
    for page in PAGES:
        text = (ROOT / page).read_text()
        assert blocks(page), f"{page}: no snippets"
        for stale in ("../shared", "agreement issue", "DESIGN.md"):
            assert stale not in text, f"{page} points at {stale!r}, which a user cannot see"
    readme = blocks("README.md")
    setup = [b.body.strip() for b in readme if b.lang == "bash"]
    assert setup[:2] == ['./scripts/install.sh && .venv/bin/cascade run "What is the capital of France?"',
                         "./scripts/install.sh --test && .venv/bin/python -m pytest -q"]


# --- running a page ------------------------------------------------------------------------------


class _AnySecret(dict[str, str]):
    """The environment, with a stand-in for every secret a snippet names and the reader has
    not set (the snippet is checked, not run)."""

    def __contains__(self, name: object) -> bool:
        return True

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, "sk-stand-in")


class _Page:
    """One page's working folder, environment and Python namespace, shared by its blocks in
    order (like a reader following along)."""

    def __init__(self, page: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.page = page
        self.workdir = workdir
        self.monkeypatch = monkeypatch
        self.namespace: dict[str, object] = {"__name__": "__docs__"}
        (workdir / "policies").symlink_to(ROOT / "policies")
        monkeypatch.chdir(workdir)

    def run(self) -> None:
        for index, block in enumerate(blocks(self.page)):
            where = f"{self.page} block {index + 1} ({block.lang})"
            if block.file is not None:
                (self.workdir / block.file).write_text(block.body)
            match block.lang:
                case "python":
                    self._python(block.body, where)
                case "console" | "bash":
                    self._commands(block, where)
                case "yaml":
                    self._yaml(block.body, where)
                case _:
                    pass  # csv, json, text: data the page writes or shows

    def _python(self, code: str, where: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, where, "exec"), self.namespace)  # noqa: S102 - our own docs

    def _yaml(self, text: str, where: str) -> None:
        fragment = text.lstrip().startswith("- ")
        document = "tiers:\n" + text if fragment else text
        if fragment or re.search(r"^tiers:", document, re.MULTILINE):
            parse_policy(document, source=where, env=_AnySecret())

    def _commands(self, block: Block, where: str) -> None:
        lines = block.body.splitlines()
        commands = [line[2:] for line in lines if line.startswith("$ ")] if block.lang == "console" \
            else [line for line in lines if line.strip() and not line.startswith("#")]
        for command in commands:
            if NOT_RUN.match(command):
                continue
            self._command(command, f"{where}: {command}")

    def _command(self, command: str, where: str) -> None:
        expected = 0
        found = _EXIT.search(command)
        if found:
            expected, command = int(found[1]), command[: found.start()]
        stdin = None
        if "|" in command:
            left, command = (part.strip() for part in command.split("|", 1))
            words = shlex.split(left)
            assert words[0] in ("echo", "printf"), f"{where}: only echo/printf may pipe"
            stdin = " ".join(words[1:]) + "\n"
        words = shlex.split(command, comments=True)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            self.monkeypatch.setenv(name, value)
            return
        assert words[0] in ("cascade", ".venv/bin/cascade"), f"{where}: not a cascade command"
        result = CliRunner().invoke(app, words[1:], input=stdin, terminal_width=200)
        assert result.exit_code == expected, f"{where} exited {result.exit_code}:\n{result.output}"


# --- the pages -----------------------------------------------------------------------------------


def _no_model_pages() -> list[str]:
    return [p for p in PAGES if not directives(p) & {"models", "openai-server"}]


def _model_pages() -> list[str]:
    return [p for p in PAGES if directives(p) & {"models", "openai-server"}]


@pytest.fixture(autouse=True)
def _own_tracer_provider() -> Iterator[None]:
    """A page may install a global tracer provider (tracing.md does): give it a fresh slot and
    put the previous one back afterwards, so no other test sees it."""
    from opentelemetry import trace
    from opentelemetry.metrics import _internal as metrics
    from opentelemetry.util._once import Once

    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    meters = metrics._METER_PROVIDER, metrics._METER_PROVIDER_SET_ONCE  # observability.md
    metrics._METER_PROVIDER, metrics._METER_PROVIDER_SET_ONCE = None, Once()
    try:
        yield
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved
        installed = metrics._METER_PROVIDER
        if installed is not None and hasattr(installed, "shutdown"):
            installed.shutdown()  # its Prometheus reader leaves the process-wide registry
        metrics._METER_PROVIDER, metrics._METER_PROVIDER_SET_ONCE = meters


@pytest.mark.parametrize("page", _no_model_pages())
def test_page_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   request: pytest.FixtureRequest) -> None:
    if "otlp-receiver" in directives(page):
        endpoint = request.getfixturevalue("otlp_receiver")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.url)
    _Page(page, tmp_path, monkeypatch).run()
    if "otlp-receiver" in directives(page):
        assert endpoint.received, f"{page}: nothing reached the OTLP receiver"


@pytest.mark.models
@pytest.mark.parametrize("page", _model_pages())
def test_page_with_models_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               request: pytest.FixtureRequest) -> None:
    if "openai-server" in directives(page):
        monkeypatch.setenv("OPENAI_BASE_URL", request.getfixturevalue("llama_server"))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    _Page(page, tmp_path, monkeypatch).run()


# --- a real OTLP/HTTP receiver on loopback ---------------------------------------------------------


@dataclass
class Receiver:
    url: str
    received: list[bytes]


@pytest.fixture
def otlp_receiver() -> Iterator[Receiver]:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path in ("/v1/traces", "/v1/metrics"):
                received.append(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_docs_runner_fails_on_a_broken_snippet(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    for name, text, error, message in [
            ("python.md", "```python\nraise RuntimeError('broken')\n```\n", RuntimeError, "broken"),
            ("console.md", "```console\n$ cascade validate missing.yaml\n```\n", AssertionError,
             "exited 2"),
            ("yaml.md", "```yaml\ntiers:\n  - {name: a}\n```\n", cascade.PolicyError,
             "required key is missing")]:
        (tmp_path / name).write_text(text)
        workdir = tmp_path / name.removesuffix(".md")
        workdir.mkdir()
        with pytest.raises(error, match=message):
            _Page(name, workdir, monkeypatch).run()


def test_the_published_calibration_table_is_reproduced(tmp_path: Path) -> None:
    """docs/default-policy.md's before/after table is what the benchmark computes from the
    answers it saved, and the thresholds it chose are the ones in policies/default.yaml."""
    import subprocess

    from cascade import load_policy

    script = ROOT / "benchmarks" / "default_calibration.py"
    done = subprocess.run([sys.executable, str(script), "--from-json", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    table = [line for line in (tmp_path / "default_calibration.md").read_text().splitlines()
             if line.startswith("| ")]
    page = (ROOT / "docs" / "default-policy.md").read_text()
    assert "\n".join(table) in page
    chosen = re.search(r"smollm2: logprob (\w+), threshold (\d\.\d+), gemma3: logprob (\w+), "
                       r"threshold (\d\.\d+)", (tmp_path / "default_calibration.md").read_text())
    assert chosen is not None
    tiers = load_policy(ROOT / "policies" / "default.yaml").tiers
    assert [(t.estimator.statistic.value, t.threshold) for t in tiers] == [  # type: ignore[union-attr]
        (chosen[1], float(chosen[2])), (chosen[3], float(chosen[4]))]
