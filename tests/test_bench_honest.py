"""`cascade bench` on a user's own file: what was asked either runs or is reported (console,
bench.md, exit code), the answer kind is detected, progress works without a terminal, model
names appear, published results are never overwritten and degenerate curves never crash."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import anyio
import pytest
from rich.console import Console
from typer.testing import CliRunner

from cascade.bench import _cli as bench_cli
from cascade.bench._bench import SuiteReport, _kept
from cascade.bench._detect import answer_kind, empty_responses
from cascade.bench._methods import REGISTRY
from cascade.bench._replay import Curve
from cascade.bench._report import _dense, markdown, plot
from cascade.bench._sweep import pareto
from cascade.cli import _bench, app
from cascade.providers import load_table
from verifiers import AnswerKind

MODELS = ("meta/llama-2-70b-chat", "gpt-3.5-turbo-1106")


def write_csv(path: Path, responses: tuple[str, str] | None, rows: int = 24) -> None:
    """Llama right on even rows, gpt-3.5 always; ``responses`` None: empty response cells."""
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["", "sample_id", "prompt", "eval_name", *MODELS,
                      *(f"{m}|model_response" for m in MODELS), *(f"{m}|total_cost" for m in MODELS)])
        for i in range(rows):
            cells = ("", "") if responses is None else responses
            out.writerow([i, f"s{i}", f"['Question {i}?']", "toy", int(i % 2 == 0), 1,
                          *cells, 0.001, 0.01])


def test_help_lists_every_method_and_router_kind() -> None:
    assert _bench.METHODS == tuple(REGISTRY)
    assert _bench.ROUTERS == bench_cli.ROUTERS
    result = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split()).replace("- ", "-")  # click wraps at hyphens
    for name in (*REGISTRY, *bench_cli.ROUTERS):
        assert name in text, name


@pytest.mark.parametrize(("responses", "kind"), [
    (("['B']", "['The answer is C.']"), AnswerKind.CHOICE),
    (("['#### 42']", "['The answer is 17']"), AnswerKind.NUMBER),
    (("['def f(x):\\n    return x']", "['```python\\ndef g(y): return y\\n```']"), AnswerKind.CODE),
    (("['Tides come from the moon pulling on the oceans of the earth and more.']",
      "['Gravity of the moon and the sun, mostly, acting on water over a long time.']"), AnswerKind.TEXT),
])
def test_answer_kind_is_detected_from_the_responses(tmp_path: Path, responses: tuple[str, str],
                                                    kind: AnswerKind) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, responses)
    found = answer_kind(load_table(path))
    assert found is not None and found.kind is kind


def test_empty_responses_are_found_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, None)
    table = load_table(path)
    assert answer_kind(table) is None
    assert empty_responses(table) == {MODELS[0]: 1.0, MODELS[1]: 1.0}
    notes: list[str] = []
    suite = bench_cli.csv_suite(path, None, tmp_path / "out", notes=notes)
    assert suite.answer is None
    assert any("empty response cells" in n for n in notes)
    assert any("agreement and verifier cascades cannot run" in n for n in notes)


def test_a_requested_method_that_cannot_run_is_loud(tmp_path: Path) -> None:
    """No answers to agree on: agreement does not run; the console and bench.md say why and
    the exit code is 1, while the single models are still measured and written."""
    path = tmp_path / "t.csv"
    write_csv(path, None)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "--csv", str(path), "--method", "agreement",
                                      "--out", str(out), "--bootstrap", "0"])
    assert result.exit_code == 1, result.output
    assert "did not run on any suite: agreement" in result.output
    assert "note: agreement:" in result.output
    text = (out / "bench.md").read_text()
    assert "agreement: no answer kind" in text and "| meta/llama-2-70b-chat |" not in text
    assert "| meta-llama-2-70b-chat |" in text  # tiers are named after the file's models
    result = CliRunner().invoke(app, ["bench", "--csv", str(path), "--method", "vote",
                                      "--out", str(tmp_path / "out2"), "--bootstrap", "0"])
    assert result.exit_code == 1 and "vote: judges no tier" in (tmp_path / "out2" / "bench.md").read_text()


def test_unknown_method_or_router_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, ("['A']", "['B']"))
    for flag, name in (("--method", "votes"), ("--router", "bert-static")):
        result = CliRunner().invoke(app, ["bench", "--csv", str(path), flag, name, "--out", str(tmp_path)])
        assert result.exit_code == 2 and f"no {'method' if flag == '--method' else 'router kind'} {name}" in result.output


def test_bench_without_its_extra_stops_at_once_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "matplotlib" else real(name, *rest))
    path = tmp_path / "t.csv"
    write_csv(path, ("['A']", "['B']"))
    result = CliRunner().invoke(app, ["bench", "--csv", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "needs matplotlib" in result.output and "cascade-engine[bench]" in result.output
    assert not (tmp_path / "out").exists()


def test_plain_progress_lines_when_not_a_terminal() -> None:
    buffer = io.StringIO()
    now = [0.0]
    reporter = bench_cli.Reporter(Console(file=buffer, force_terminal=False), every=30, clock=lambda: now[0])
    with reporter:
        reporter.start("toy", 100)
        reporter.phase("single models")
        for _ in range(7):  # the suite needs fewer runs than its bound (fewer settings on the hull)
            now[0] += 5
            reporter.advance(10)
        reporter.finish()
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("[toy] started — 0 of at most 100")
    assert "[toy] single models — 0 of at most 100 engine runs" in lines[1]
    assert len([line for line in lines if "engine runs, " in line and "— 60 of at most 100" in line]) == 1  # 30 s later
    assert lines[-1].startswith("[toy] done — 70 of 70 engine runs, 35 s")  # the count, not the bound


def test_a_silent_phase_still_prints_a_line_every_interval() -> None:
    """Encoding and training call no progress: off a terminal the heartbeat names the phase."""
    buffer = io.StringIO()
    now = [0.0]
    reporter = bench_cli.Reporter(Console(file=buffer, force_terminal=False), every=30, clock=lambda: now[0])
    with reporter:
        reporter.tick()  # before any suite: nothing to say
        reporter.start("toy", 10)
        reporter.phase("cascade: verifier")
        now[0] = 29.0
        reporter.tick()
        now[0] = 31.0
        reporter.tick()
        reporter.tick()  # just printed: silent
        now[0] = 62.0
        reporter.tick()
    lines = buffer.getvalue().splitlines()
    still = [line for line in lines if "still running" in line]
    assert [line.split(" — ")[0] for line in still] == ["[toy] cascade: verifier (still running)"] * 2
    assert still[0].endswith("31 s") and still[1].endswith("62 s")
    assert len(lines) == 4  # started, the phase, two heartbeats


def test_the_heartbeat_runs_beside_the_work() -> None:
    buffer = io.StringIO()
    reporter = bench_cli.Reporter(Console(file=buffer, force_terminal=False), every=0.01)

    async def main() -> None:
        reporter.start("toy", 1)
        reporter.phase("encoding")
        async with anyio.create_task_group() as group:
            group.start_soon(reporter.heartbeat)
            await anyio.sleep(0.2)
            group.cancel_scope.cancel()

    anyio.run(main)
    assert "[toy] encoding (still running)" in buffer.getvalue()


def test_default_output_is_outside_the_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CASCADE_BENCH_OUT", raising=False)
    first = bench_cli.default_out()
    assert Path(__file__).resolve().parents[1] not in first.parents
    monkeypatch.setenv("CASCADE_BENCH_OUT", str(tmp_path / "x"))
    assert bench_cli.default_out() == tmp_path / "x"


def test_tracked_results_are_never_overwritten(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "bench.md").write_text("published\n")
    for args in (["init", "-q"], ["add", "bench.md"],
                 ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "r"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    path = tmp_path / "t.csv"
    write_csv(path, ("['A']", "['B']"))
    result = CliRunner().invoke(app, ["bench", "--csv", str(path), "--method", "none", "--out", str(repo)])
    assert result.exit_code == 2 and "tracked file" in result.output
    assert (repo / "bench.md").read_text() == "published\n"


def test_partial_results_say_what_is_still_to_run(tmp_path: Path) -> None:
    report = SuiteReport("toy", 4, 1.0, [], notes=["agreement: x (not run)"])
    report.metrics = {"a": {"kind": "single", "points": [[0.5, 0.5]], "aiq": 0.25,
                            "cost_to_95": None, "cost_to_99": None}}
    report.reference = {"best_single": [0.5, 0.5]}
    bench_cli.Outputs(tmp_path, "cascade bench").write([report], ["arc"])
    text = (tmp_path / "bench.md").read_text()
    assert "(partial: still to run arc)" in text and "- agreement: x (not run)" in text


def test_degenerate_curves_are_notes_not_crashes() -> None:
    notes: list[str] = []
    assert not _kept(Curve("router + cascade: knn + agreement", "router+cascade"), notes)
    assert notes == ["router + cascade: knn + agreement: no setting was found on train, so nothing "
                     "was measured (not run)"]
    assert pareto([], 12) == []


def test_hulls_are_drawn_as_cost_mixtures_and_plots_render(tmp_path: Path) -> None:
    xs, ys = _dense([(1.0, 0.5), (3.0, 0.7)], 4.0, per_segment=3)
    assert (xs, ys) == ([1.0, 2.0, 3.0, 3.5, 4.0], [0.5, pytest.approx(0.6), 0.7, 0.7, 0.7])
    report = SuiteReport("toy", 4, 1.0, [])
    report.metrics = {
        "cheap": {"kind": "single", "points": [[0.1, 0.5]], "aiq": 0.4},
        "cheap-2": {"kind": "single", "points": [[0.1001, 0.5]], "aiq": 0.4},
        "dear": {"kind": "single", "points": [[1.0, 0.8]], "aiq": 0.7},
        "random": {"kind": "random", "points": [[0.1, 0.5], [1.0, 0.8]], "aiq": 0.6},
        "oracle": {"kind": "oracle", "points": [[0.3, 0.9]], "aiq": 0.8},
        "oracle frontier": {"kind": "oracle", "points": [[0.1, 0.5], [0.3, 0.9]], "aiq": 0.85},
        "cascade: x": {"kind": "cascade", "points": [[0.2, 0.7], [0.5, 0.8]], "aiq": 0.7},
    }
    plot(report, tmp_path / "toy.png")
    assert (tmp_path / "toy.png").stat().st_size > 10_000
    assert "| oracle frontier |" not in markdown([]) and markdown([]) == ""


@pytest.mark.data
def test_detected_answer_kinds_match_the_built_in_suites(shared_data: Path) -> None:
    from cascade.bench._suites import SUITES

    files = {"arc": "routerbench/arc_challenge_test.csv", "winogrande": "routerbench/winograde_test.csv",
             "mbpp": "routerbench/mbpp_test.csv", "gsm8k": "routellm_gsm8k/gsm8k_responses.csv"}
    for suite, file in files.items():
        found = answer_kind(load_table(shared_data / file))
        assert found is not None and found.kind is SUITES[suite].answer, suite
