"""The MiniLM cross-encoder verifier: (query, answer) -> P(correct), fine-tuned with torch.

Inputs are "[CLS] query-tail [SEP] answer-tail [SEP]"; the query keeps its end (few-shot
prompts put the question last), the answer its last characters. Trained with AdamW and a
class-weighted BCE loss, then Platt-calibrated on a held-out fifth. Saved as safetensors
(encoder via ``save_pretrained(safe_serialization=True)``, head and calibration in the
artifact), loaded with ``use_safetensors=True`` after the artifact's hashes are checked.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from verifiers._artifacts import Artifact, save_artifact
from verifiers._encoder import fine_tune, load_minilm, load_pretrained
from verifiers._trained import (
    ANSWER_TAIL,
    Calibration,
    CalibrationMap,
    Example,
    VerifierKind,
    _split,
    check_examples,
)
from verifiers._types import Capability, Estimate, EstimateContext

ENCODER_DIR = "encoder"
CROSS_QUERY_TAIL = 1000  # the query's end it reads beside the answer (one pair per input)


@dataclass(slots=True)
class CrossEncoderVerifier:
    tokenizer: Any
    model: Any  # transformers BertModel
    head: Any  # torch.nn.Linear(384, 1)
    calibration: CalibrationMap
    max_length: int = 256
    metrics: dict[str, object] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    name = "verifier-cross-encoder"

    @property
    def requires(self) -> frozenset[Capability]:
        return frozenset()

    def _logits(self, queries: Sequence[str], answers: Sequence[str]) -> Any:
        batch = self.tokenizer([q[-CROSS_QUERY_TAIL:] for q in queries], [a[-ANSWER_TAIL:] for a in answers],
                               padding=True, truncation="longest_first", max_length=self.max_length,
                               return_tensors="pt")
        cls = self.model(**batch).last_hidden_state[:, 0]
        return self.head(cls).squeeze(-1)

    def scores(self, queries: Sequence[str], answers: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import torch

        out = []
        with self._lock, torch.inference_mode():
            self.model.eval()
            for i in range(0, len(queries), batch_size):
                out.append(self._logits(queries[i:i + batch_size], answers[i:i + batch_size]).numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def predict(self, queries: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        return np.clip(self.calibration(self.scores(queries, answers)), 0.0, 1.0)

    async def estimate(self, ctx: EstimateContext) -> Estimate:
        query = "\n".join(t.content for t in ctx.query)
        value = await anyio.to_thread.run_sync(lambda: float(self.predict([query], [ctx.candidate.text])[0]))
        return Estimate(value, details={"kind": self.name})

    def save(self, directory: str | Path) -> Path:
        folder = Path(directory)
        self.model.save_pretrained(str(folder / ENCODER_DIR), safe_serialization=True)
        self.tokenizer.save_pretrained(str(folder / ENCODER_DIR))
        arrays = {"head.weight": self.head.weight.detach().numpy(), "head.bias": self.head.bias.detach().numpy()}
        meta = {"calibration": self.calibration.to_meta(), "max_length": self.max_length,
                "metrics": self.metrics}
        return save_artifact(folder, VerifierKind.CROSS_ENCODER.value, meta, arrays)

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> CrossEncoderVerifier:
        import torch

        encoder = artifact.directory / ENCODER_DIR
        tokenizer, model = load_pretrained(encoder, use_safetensors=True)
        head = torch.nn.Linear(model.config.hidden_size, 1)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(artifact.arrays["head.weight"]))
            head.bias.copy_(torch.from_numpy(artifact.arrays["head.bias"]))
        return cls(tokenizer, model, head, CalibrationMap.from_meta(artifact.meta["calibration"]),
                   int(artifact.meta.get("max_length", 256)), dict(artifact.meta.get("metrics", {})))  # type: ignore[arg-type]


def train_cross_encoder(examples: Sequence[Example], *, epochs: int = 1, max_length: int = 256,
                        batch_size: int = 16, lr: float = 3e-5, seed: int = 0,
                        limit_steps: int | None = None, base: Path | None = None) -> CrossEncoderVerifier:
    import torch

    labels = check_examples(examples)
    torch.manual_seed(seed)
    tokenizer, model = load_minilm(base)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    verifier = CrossEncoderVerifier(tokenizer, model, head, CalibrationMap(Calibration.PLATT), max_length)
    fit, held = _split(len(examples), seed)
    positives = max(1, int(labels[fit].sum()))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(fit) - positives) / positives))

    def batch_loss(chosen: np.ndarray) -> torch.Tensor:
        logits = verifier._logits([examples[i].query for i in chosen], [examples[i].answer for i in chosen])
        return loss_fn(logits, torch.tensor(labels[chosen], dtype=torch.float32))

    steps, _ = fine_tune((model, head), fit, batch_loss, epochs=epochs, batch_size=batch_size,
                         lr=lr, seed=seed, limit_steps=limit_steps)
    if held.size:
        scores = verifier.scores([examples[i].query for i in held], [examples[i].answer for i in held])
        verifier.calibration = CalibrationMap.fit(Calibration.PLATT, scores, labels[held])
    verifier.metrics = {"examples": len(examples), "epochs": epochs, "steps": steps}
    return verifier
