"""What a user's recorded-answers file can support, read from the data (pure, no engine):
the answer kind its responses compare as (for agreement cascades) and how many response
cells are empty (methods that read answers cannot run on a file without them). A file with
no response columns at all (``has_responses`` False) has no kind and no *empty* cells: its
answers are absent, which ``csv_suite`` reports as such."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cascade.providers._replay_data import ReplayTable
from verifiers import AnswerKind, normalise

SAMPLE = 400  # responses looked at (spread over the file's rows and models)
_CODE_MARKERS = ("def ", "```", "return ", "import ")


@dataclass(frozen=True, slots=True)
class Detected:
    kind: AnswerKind
    reason: str  # one line for the console and bench.md


def _responses(table: ReplayTable) -> list[str]:
    models = table.models or ("",)
    step = max(1, len(table.rows) * len(models) // SAMPLE)
    out = []
    for i, row in enumerate(table.rows):
        for j, model in enumerate(models):
            if (i * len(models) + j) % step == 0:
                text = (table.record(row, model).response or "").strip()
                if text:
                    out.append(text)
    return out


def answer_kind(table: ReplayTable) -> Detected | None:
    """The answer kind most of the file's non-empty responses parse as: code (a function or a
    fenced block in half of them), a choice letter (short answers naming one of A–E in 60 %),
    a number (80 %), else free text; None when every sampled response is empty."""
    texts = _responses(table)
    if not texts:
        return None
    n = len(texts)
    code = sum(any(m in t for m in _CODE_MARKERS) for t in texts) / n
    choice = sum(len(t) <= 80 and normalise(t, AnswerKind.CHOICE) is not None for t in texts) / n
    number = sum(normalise(t, AnswerKind.NUMBER) is not None for t in texts) / n
    shares = f"code {code:.0%}, choice letter {choice:.0%}, number {number:.0%} of {n} sampled responses"
    if code >= 0.5:
        return Detected(AnswerKind.CODE, f"answers compared as code ({shares})")
    if choice >= 0.6:
        return Detected(AnswerKind.CHOICE, f"answers compared as choice letters ({shares})")
    if number >= 0.8:
        return Detected(AnswerKind.NUMBER, f"answers compared as numbers ({shares})")
    return Detected(AnswerKind.TEXT, f"answers compared as normalised free text ({shares})")


def empty_responses(table: ReplayTable) -> Mapping[str, float]:
    """Per model, the share of rows whose response cell is empty (only models with any)."""
    if not table.has_responses:
        return {}
    models = table.models or ("",)
    out = {}
    for model in models:
        empty = sum(not (table.record(row, model).response or "").strip() for row in table.rows)
        if empty:
            out[model or "(the file's model)"] = empty / len(table.rows)
    return out
