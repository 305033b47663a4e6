"""The CLI on bad input: exit code 2, a clear message, nothing run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cascade
from cascade.cli import app

runner = CliRunner()
FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", f"tiers:\n  - {{name: a, model: cheap-model, provider: {{kind: replay, data: {FIXTURE}}}}}\n")
    bad = write(tmp_path, "bad.yaml", "tiers:\n  - name: a\n    model: m\n    provider: {kind: nope}\n")
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert "✓" in result.output and "good.yaml" in result.output
    assert "tiers[0].provider (line 4): unknown provider kind 'nope'" in result.output


def test_validate_ok_exits_0(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", "tiers:\n  - {name: a, model: m, provider: {kind: replay, data: x}}\n")
    assert runner.invoke(app, ["validate", str(good)]).exit_code == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tiers: [\n", "malformed YAML"),
        ("tiers:\n  - {name: a, model: m, provider: {kind: openai, base_url: 'http://h/v1', api_key: '${NO_SUCH_KEY_X}'}}\n",
         "environment variable NO_SUCH_KEY_X is not set"),
        ("tiers:\n  - {name: a, model: m, provider: {kind: llama_cpp, model_path: missing.gguf}}\n",
         "missing.gguf does not exist"),
        (f"tiers:\n  - {{name: a, model: gpt-9, provider: {{kind: replay, data: {FIXTURE}}}}}\n",
         "model 'gpt-9' is not in the data"),
    ],
)
def test_run_with_bad_policy_exits_2(tmp_path: Path, text: str, message: str) -> None:
    policy = write(tmp_path, "p.yaml", text)
    result = runner.invoke(app, ["run", "hi", "--policy", str(policy)])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_run_with_unreachable_base_url_exits_2_before_running(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = write(tmp_path, "p.yaml",
                   f"tiers:\n  - {{name: a, model: m, provider: {{kind: openai, base_url: 'http://127.0.0.1:{port}/v1'}}}}\n")
    result = runner.invoke(app, ["run", "hi", "--policy", str(policy)])
    assert result.exit_code == 2
    assert f"openai@127.0.0.1:{port}/v1: cannot connect" in result.output


def test_run_unknown_feature_and_bad_feature_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "hi", "--feature", "nope", "--policies", str(tmp_path)])
    assert result.exit_code == 2 and "no policy for feature 'nope'" in result.output
    result = runner.invoke(app, ["run", "hi", "--feature", "../etc/passwd"])
    assert result.exit_code == 2 and "invalid feature name" in result.output


def test_run_empty_prompt_exits_2(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", f"tiers:\n  - {{name: a, model: cheap-model, provider: {{kind: replay, data: {FIXTURE}}}}}\n")
    result = runner.invoke(app, ["run", "  ", "--policy", str(policy)])
    assert result.exit_code == 2 and "the prompt is empty" in result.output


def test_run_replay_json_and_table(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", f"""
tiers:
  - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: {FIXTURE}}}}}
""")
    result = runner.invoke(app, ["run", "Question: What is 2+2?\nAnswer:", "--policy", str(policy), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] == "4" and data["accepted"] is True
    assert data["attempts"][0]["decision"] == "accept" and data["attempts"][0]["cost"] == 0.0001
    table = runner.invoke(app, ["run", "Question: What is 2+2?\nAnswer:", "--policy", str(policy)])
    assert table.exit_code == 0 and "cheap-model" in table.output and "accept" in table.output


def test_run_policy_and_feature_together_exit_2(tmp_path: Path) -> None:
    policy = tmp_path / "x.yaml"  # exists and is valid: only the conflict can fail the run
    policy.write_text("tiers:\n  - {name: a, model: m, provider: {kind: replay, data: nowhere.csv}}\n")
    result = runner.invoke(app, ["run", "hi", "--policy", str(policy), "--feature", "y"])
    assert result.exit_code == 2
    assert "give --policy or --feature, not both" in " ".join(result.output.split())


def test_schema_is_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0 and json.loads(result.output)["title"] == "cascade policy"
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["type"] == "object"


def test_run_with_no_answer_exits_1_and_shows_attempts(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", f"tiers:\n  - {{name: a, model: cheap-model, provider: {{kind: replay, data: {FIXTURE}}}}}\n")
    result = runner.invoke(app, ["run", "never recorded", "--policy", str(policy)])
    assert result.exit_code == 1
    assert "ReplayMissError" in result.output and "every tier failed" in result.output
    as_json = runner.invoke(app, ["run", "never recorded", "--policy", str(policy), "--json"])
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout.splitlines()[0])
    assert payload["attempts"][0]["decision"] == "error"


# --- the first hour: stdin, --system, overrides, --version, flags, validate warnings, --out ---

REPLAY = f"tiers:\n  - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: '{FIXTURE}'}}}}\n"


def test_run_dash_reads_the_prompt_from_stdin(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", REPLAY)
    result = runner.invoke(app, ["run", "-", "--policy", str(policy), "--json"],
                           input="Question: What is 2+2?\nAnswer:")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] == "4" and data["finish_reason"] == "stop"
    assert data["attempts"][0]["finish_reason"] == "stop"
    empty = runner.invoke(app, ["run", "-", "--policy", str(policy)], input="")
    assert empty.exit_code == 2 and "the prompt is empty" in empty.output


def test_run_system_and_overrides(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", REPLAY)
    ok = runner.invoke(app, ["run", "Question: What is 2+2?\nAnswer:", "--policy", str(policy),
                             "--system", "Be brief.", "--max-tokens", "20", "--temperature", "0.2",
                             "--deadline", "30"])
    assert ok.exit_code == 0, ok.output
    assert "finish" in ok.output and "stop" in ok.output  # the table's finish column
    for args, message in [(["--max-tokens", "0"], "max_tokens must be an integer >= 1"),
                          (["--temperature", "5"], "temperature must be a number in [0, 2]"),
                          (["--deadline", "0"], "--deadline must be a positive number")]:
        bad = runner.invoke(app, ["run", "hi", "--policy", str(policy), *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_version_and_clean_boolean_flags() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"cascade {cascade.__version__}"
    help_text = runner.invoke(app, ["run", "--help"], terminal_width=200).output
    assert "--check" in help_text and "--no-check" in help_text and "<bool>" not in help_text
    for command in ("validate", "calibrate", "calibrate-router"):
        assert "<bool>" not in runner.invoke(app, [command, "--help"], terminal_width=200).output


SUPPORT_CHAT = Path(__file__).resolve().parents[1] / "policies" / "support-chat.yaml"


def test_validate_reports_unset_secrets_as_warnings_unless_strict(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lenient = runner.invoke(app, ["validate", str(SUPPORT_CHAT)])
    assert lenient.exit_code == 0, lenient.output
    assert "warning:" in lenient.output and "OPENAI_API_KEY is not set" in lenient.output
    strict = runner.invoke(app, ["validate", "--strict", str(SUPPORT_CHAT)])
    assert strict.exit_code == 2 and "OPENAI_API_KEY is not set" in strict.output
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert runner.invoke(app, ["validate", "--strict", str(SUPPORT_CHAT)]).exit_code == 0


def test_validate_warns_about_a_remote_tier_without_any_price(tmp_path: Path) -> None:
    unpriced = write(tmp_path, "u.yaml", "tiers:\n  - {name: own, model: my-model, provider: "
                     "{kind: openai, base_url: 'http://127.0.0.1:9/v1'}}\n")
    listed = write(tmp_path, "l.yaml", "tiers:\n  - {name: mini, model: gpt-4o-mini, provider: "
                   "{kind: openai, base_url: 'https://api.openai.com/v1'}}\n")
    lenient = runner.invoke(app, ["validate", str(unpriced), str(listed)], terminal_width=200)
    assert lenient.exit_code == 0, lenient.output
    assert "has no `price:`" in lenient.output and "cost $0" in lenient.output
    assert "genai-prices" in lenient.output  # the listed one says where its price comes from
    strict = runner.invoke(app, ["validate", "--strict", str(unpriced)])
    assert strict.exit_code == 2
    assert runner.invoke(app, ["validate", "--strict", str(listed)]).exit_code == 0


def test_validate_names_estimators_an_upstream_may_not_serve(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", "tiers:\n  - {name: r, model: gpt-4o-mini, provider: "
                   "{kind: openai, base_url: 'https://api.openai.com/v1'}, estimator: "
                   "{kind: logprob}, threshold: 0.5}\n")
    result = runner.invoke(app, ["validate", str(policy)], terminal_width=200)
    assert result.exit_code == 0 and "needs token logprobs" in result.output
    assert "LogprobsUnavailableError" in result.output


def test_calibrate_writes_only_where_told(tmp_path: Path) -> None:
    from test_calibrate_cli import POLICY, write_mot

    data = tmp_path / "dates.json"
    write_mot(data)
    policy = write(tmp_path, "dates.yaml", POLICY.format(data=data))
    original = policy.read_text()
    base = ["calibrate", "--policy", str(policy), "--data", str(data), "--target", "quality=0.95"]
    printed = runner.invoke(app, base)
    assert printed.exit_code == 0, printed.output
    assert "nothing written" in printed.output and policy.read_text() == original
    copy = tmp_path / "calibrated.yaml"
    written = runner.invoke(app, [*base, "--out", str(copy)])
    assert written.exit_code == 0 and policy.read_text() == original
    assert "# calibrated by the test" in copy.read_text() and copy.read_text() != original
    both = runner.invoke(app, [*base, "--out", str(copy), "--in-place"])
    assert both.exit_code == 2 and "not both" in both.output
