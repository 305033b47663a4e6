#!/usr/bin/env bash
# Proves that `pytest -m "not models"` loads no model: runs that selection with
# tests/model_guard.py, which makes every model load (llama.cpp in process, the llama.cpp
# server fixture, transformers models and tokenizers) raise and fail the session. Extra
# arguments go to pytest (e.g. a subset of files). A few minutes for the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/tests:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec nice "$PY" -m pytest -p model_guard --assert=plain -m "not models" -q "$@"
