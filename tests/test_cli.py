"""The CLI on bad input: exit code 2, a clear message, nothing run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
    good = write(tmp_path, "good.yaml", f"tiers:\n  - {{name: a, model: m, provider: {{kind: replay, data: x}}}}\n")
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
