"""The markers hold: `-m "not models"` loads no model. Runs the non-model tests of every test
file that touches a model (found by what it imports or names) under tests/model_guard.py, in a
subprocess, and checks that the guard both works (it stops a model load) and saw none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
MODEL_WORDS = re.compile(r"llama_server|LlamaCppProvider|bundled_model_locator|llama_cpp|smollm2|"
                         r"gemma|shared_encoder|MiniLM|train_cross_encoder|sklearn_verifier|"
                         r"train_sklearn_verifier|shared_static|distil_static|train-verifier|"
                         r"kind: (?:knn|mf|bert|causal_llm)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "model_guard", "-q",
                           "-p", "no:cacheprovider", "--assert=plain", *args], cwd=TESTS.parent, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_guard_stops_a_model_load(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("import llama_cpp\nfrom transformers import BertModel\n\n"
                     "def test_llama():\n    llama_cpp.Llama(model_path='x.gguf')\n\n"
                     "def test_swallowed():\n    try:\n        BertModel.from_pretrained('x')\n"
                     "    except Exception:\n        pass  # swallowed: the session must fail anyway\n")
    done = _run(str(probe), "--rootdir", str(tmp_path))
    assert done.returncode != 0, done.stdout
    assert "test_probe.py::test_llama: llama_cpp.Llama(x.gguf)" in done.stdout
    assert "test_probe.py::test_swallowed: BertModel.from_pretrained(x)" in done.stdout


def test_not_models_selection_loads_no_model() -> None:
    files = sorted(str(p.relative_to(TESTS.parent)) for p in TESTS.glob("test_*.py")
                   if p.name != Path(__file__).name and MODEL_WORDS.search(p.read_text()))
    assert "tests/test_routing.py" in files and "tests/test_llama_local.py" in files
    done = _run("-m", "not models and not data", *files)
    assert done.returncode in (0, 5), done.stdout[-3000:] + done.stderr[-2000:]
    assert "model_guard: no model was loaded" in done.stdout
