"""A static (token-table) version of the MiniLM sentence encoder, distilled locally from the
shipped model, model2vec-style: no download, no new dependency.

Distillation runs MiniLM once over every vocabulary token (input ``[CLS] token [SEP]``),
keeps the token's own output vector, reduces the table with PCA (scikit-learn) and stores it
as float16. Encoding a text is then the fast tokenizer (no special tokens) plus a weighted
mean of table rows in numpy: well under a millisecond, against ~30 ms for a MiniLM forward
pass on a 2-core CPU, at some cost in quality (docs/routing.md has both measured).

Token weights: the mean down-weights very common tokens with the smooth-inverse-frequency
weight ``a / (a + p(token))`` (Arora et al. 2017, as model2vec does), where ``p`` comes from
Zipf's law over the token's rank. The MiniLM (BERT uncased) vocabulary lists whole words
roughly by corpus frequency from id 1996 ("the", "of", "and", ...), so the rank is the id
minus 1995; single characters (ids 999-1995) count as the most frequent. Padding, ``[unused]``
and the special tokens weigh 0. Nothing beyond the shipped model is needed to compute this.

Artifacts (``StaticEncoder.save`` / ``load_static``): ``weights.safetensors`` (table float16,
weights float32) + ``meta.json`` + a copy of MiniLM's ``tokenizer.json``, so the table and the
tokenizer that indexes it always travel together (a table row is a token id); the
``manifest.json`` holds the sha256 of every file and is checked at load.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verifiers._artifacts import ArtifactError, load_artifact, save_artifact
from verifiers._encoder import load_minilm, minilm_path

KIND = "static-encoder"
TOKENIZER = "tokenizer.json"
FIRST_WORD = 1996  # "the": whole words from here on are listed roughly by frequency
FIRST_REAL = 999  # ids below are [PAD], [unusedN] and the special tokens
SIF_A = 1e-3


def sif_weights(vocab_size: int, a: float = SIF_A) -> np.ndarray:
    """``a / (a + p)`` per token id, p from Zipf's law over the rank (see the module doc);
    padding, ``[unused]`` and special tokens weigh 0."""
    rank = np.maximum(np.arange(vocab_size, dtype=np.float64) - (FIRST_WORD - 1), 1.0)
    p = 1.0 / rank
    weights = a / (a + p / p.sum())
    weights[:FIRST_REAL] = 0.0
    return weights.astype(np.float32)


def _tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads and truncates to 128: not here
    tokenizer.no_truncation()
    return tokenizer


class StaticEncoder:
    """Texts to L2-normalised float32 rows: the weighted mean of their tokens' table rows.
    Thread-safe (nothing mutable after construction); same ``encode`` signature as
    ``MiniLMEncoder`` so routers take either."""

    def __init__(self, table: np.ndarray, weights: np.ndarray, tokenizer_file: str | Path,
                 meta: dict[str, object] | None = None) -> None:
        if table.ndim != 2 or weights.shape != (table.shape[0],):
            raise ValueError(f"table {table.shape} and weights {weights.shape} do not match")
        self.table = np.ascontiguousarray(table, dtype=np.float16)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.tokenizer_file = Path(tokenizer_file)
        self.meta = dict(meta or {})
        self._tokenizer = _tokenizer(self.tokenizer_file)
        if self._tokenizer.get_vocab_size() != table.shape[0]:
            raise ValueError(f"{self.tokenizer_file}: {self._tokenizer.get_vocab_size()} tokens, "
                             f"but the table has {table.shape[0]} rows")

    @property
    def dimensions(self) -> int:
        return int(self.table.shape[1])

    def token_ids(self, texts: Sequence[str], max_length: int = 256) -> list[list[int]]:
        if len(texts) == 1:  # encode_batch's thread pool costs more than one short text
            return [self._tokenizer.encode(texts[0], add_special_tokens=False).ids[:max_length]]
        return [e.ids[:max_length] for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str], batch_size: int = 32, max_length: int = 256) -> np.ndarray:
        """``batch_size`` is accepted for ``MiniLMEncoder`` compatibility and unused; a text
        without any weighted token (e.g. empty) is the zero vector."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, ids in enumerate(self.token_ids(texts, max_length)):
            w = self.weights[ids]
            total = float(w.sum())
            if total > 0.0:
                out[row] = w @ self.table[ids].astype(np.float32) / total
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def save(self, directory: str | Path) -> Path:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        if self.tokenizer_file.resolve() != (folder / TOKENIZER).resolve():
            shutil.copyfile(self.tokenizer_file, folder / TOKENIZER)
        return save_artifact(folder, KIND, {**self.meta, "dimensions": self.dimensions,
                                            "vocab_size": int(self.table.shape[0])},
                             {"table": self.table, "weights": self.weights})


def load_static(directory: str | Path) -> StaticEncoder:
    """Load a saved static encoder after checking every file's sha256."""
    artifact = load_artifact(directory, frozenset({KIND}))
    table, weights = artifact.arrays.get("table"), artifact.arrays.get("weights")
    if table is None or weights is None:
        raise ArtifactError(artifact.directory, "the weights hold no 'table' and 'weights'")
    path = artifact.directory / TOKENIZER
    if not path.is_file():
        raise ArtifactError(path, "missing tokenizer")
    try:
        return StaticEncoder(table, weights, path, dict(artifact.meta))
    except ValueError as exc:  # shapes that do not fit together
        raise ArtifactError(artifact.directory, str(exc)) from None
    except Exception as exc:  # noqa: BLE001  # tokenizers raises its own untyped Exception
        raise ArtifactError(path, f"unreadable tokenizer ({exc})") from None


def _token_outputs(tokenizer: Any, model: Any, ids: np.ndarray, batch_size: int,
                   pooled: bool) -> np.ndarray:
    """MiniLM's output for ``[CLS] token [SEP]`` per id: the token's own vector, or the mean
    over the three positions (the encoder's pooling)."""
    import torch

    out = np.zeros((ids.size, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, ids.size, batch_size):
            chunk = torch.from_numpy(ids[start:start + batch_size]).long()
            x = torch.stack([torch.full_like(chunk, tokenizer.cls_token_id), chunk,
                             torch.full_like(chunk, tokenizer.sep_token_id)], dim=1)
            hidden = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            out[start:start + chunk.numel()] = (hidden.mean(1) if pooled else hidden[:, 1]).numpy()
    return out


def distil_static(path: Path | None = None, *, dims: int = 256, batch_size: int = 1024,
                  tokens: Sequence[int] | None = None, pooled: bool = False,
                  sif_a: float = SIF_A, seed: int = 0) -> StaticEncoder:
    """Distil a ``StaticEncoder`` from MiniLM (the PyPI copy, or a fine-tuned one at ``path``).

    ``tokens`` restricts distillation to these token ids (tests, quick experiments); every
    other token weighs 0. ``pooled`` takes the mean over ``[CLS] token [SEP]`` instead of the
    token's own output vector (the default, which routed better on RouterBench, see
    docs/routing.md). About a minute of CPU on 2 cores for the full 30,522-token vocabulary."""
    from sklearn.decomposition import PCA

    folder = Path(path or minilm_path())
    tokenizer, model = load_minilm(folder)
    model.eval()
    vocab = int(tokenizer.vocab_size)
    weights = sif_weights(vocab, sif_a)
    chosen = np.arange(vocab) if tokens is None else np.unique(np.asarray(tokens, dtype=np.int64))
    chosen = chosen[weights[chosen] > 0]
    if chosen.size < 2:
        raise ValueError("distillation needs at least two ordinary tokens")
    outputs = _token_outputs(tokenizer, model, chosen, batch_size, pooled)
    dims = min(dims, chosen.size, outputs.shape[1])
    pca = PCA(dims, random_state=seed).fit(outputs)
    table = np.zeros((vocab, dims), dtype=np.float16)
    table[chosen] = pca.transform(outputs).astype(np.float16)
    kept = np.zeros(vocab, dtype=np.float32)
    kept[chosen] = weights[chosen]
    meta = {"source": "all-MiniLM-L6-v2" if path is None else str(folder), "dims": dims,
            "output": "pooled" if pooled else "token", "weighting": f"sif a={sif_a:g} (Zipf rank)",
            "tokens": int(chosen.size),
            "explained_variance": float(pca.explained_variance_ratio_.sum())}
    return StaticEncoder(table, kept, folder / TOKENIZER, meta)


@functools.cache
def shared_static() -> StaticEncoder:
    """One static encoder per process, distilled from the shipped MiniLM on first use."""
    return distil_static()
