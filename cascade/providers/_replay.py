"""Recorded answers for offline evaluation (RouterBench 0-shot CSV format).

A replay tier answers with the response, correctness and cost recorded for the request's
prompt and the tier's model. Rows are matched by ``request.metadata["replay_row"]`` (the
1-based data row) when given, else by ``request.metadata["sample_id"]`` (RouterBench reuses a
few ids for different prompts: those are told apart by the prompt text), else by the prompt
text (the whole recorded prompt, or its last element).
"""

from __future__ import annotations

import ast
import csv
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cascade.errors import ReplayDataError, ReplayMissError
from cascade.providers._base import estimate_message_tokens, estimate_tokens
from cascade.types import Choice, Completion, ModelCall

RESPONSE_SUFFIX = "|model_response"
COST_SUFFIX = "|total_cost"
_REQUIRED = ("sample_id", "prompt")


@dataclass(frozen=True, slots=True)
class Record:
    response: str
    correct: bool | None  # None where the data has no correctness cell
    cost: float


@dataclass(frozen=True, slots=True)
class ReplayRow:
    sample_id: str
    prompt: str  # the prompt parts joined by a blank line
    parts: tuple[str, ...]
    eval_name: str
    records: Mapping[str, Record]


@dataclass(frozen=True, slots=True)
class ReplayTable:
    path: str
    models: tuple[str, ...]
    rows: tuple[ReplayRow, ...]

    def index(self) -> dict[str, ReplayRow]:
        """Prompt text -> row: whole prompts first, so that they win over a last part."""
        keys: dict[str, ReplayRow] = {}
        for row in self.rows:
            keys.setdefault(row.prompt.strip(), row)
        for row in self.rows:
            if row.parts:
                keys.setdefault(row.parts[-1].strip(), row)
        return keys

    def require_model(self, model: str) -> None:
        if model not in self.models:
            raise ReplayDataError(
                self.path, f"model {model!r} is not in the data (models: {', '.join(self.models)})"
            )


def _literal_parts(text: str) -> tuple[str, ...]:
    """RouterBench stores prompts and responses as Python-literal lists of strings."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return (text,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    return (text,)


def _correctness(cell: str, path: str, row: int, column: str) -> bool | None:
    if cell.strip() == "":
        return None
    try:
        value = float(cell)
    except ValueError:
        raise ReplayDataError(path, f"correctness {cell!r} is not a number", row=row, column=column) from None
    if value not in (0.0, 1.0):
        raise ReplayDataError(path, f"correctness {cell!r} is not 0 or 1", row=row, column=column)
    return value == 1.0


def _cost(cell: str, path: str, row: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ReplayDataError(path, f"cost {cell!r} is not a number", row=row, column=column) from None
    if not math.isfinite(value) or value < 0:
        raise ReplayDataError(path, f"cost {cell!r} is not a non-negative number", row=row, column=column)
    return value


def _models_in(header: Sequence[str], path: str) -> tuple[str, ...]:
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise ReplayDataError(path, f"missing column(s) {', '.join(missing)}")
    models = tuple(c[: -len(RESPONSE_SUFFIX)] for c in header if c.endswith(RESPONSE_SUFFIX))
    if not models:
        raise ReplayDataError(path, f"no '<model>{RESPONSE_SUFFIX}' columns")
    for model in models:
        for column in (model, model + COST_SUFFIX):
            if column not in header:
                raise ReplayDataError(path, f"missing column {column!r}", column=column)
    return models


def load_routerbench_csv(path: str | Path) -> ReplayTable:
    """Read a RouterBench-format CSV as-is (any number of models). Rows are numbered from 1
    after the header line in errors."""
    file = str(path)
    csv.field_size_limit(sys.maxsize)
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            models = _models_in(header, file)
            rows = [_read_row(raw, number, models, file) for number, raw in enumerate(reader, 1)]
    except OSError as exc:
        raise ReplayDataError(file, f"cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReplayDataError(file, f"not a readable CSV: {exc}") from None
    if not rows:
        raise ReplayDataError(file, "no data rows")
    return ReplayTable(file, models, tuple(rows))


def _read_row(raw: Mapping[str, str | None], number: int, models: Sequence[str], file: str) -> ReplayRow:
    def cell(column: str) -> str:
        value = raw.get(column)
        if value is None:
            raise ReplayDataError(file, "the row is shorter than the header", row=number, column=column)
        return value

    parts = _literal_parts(cell("prompt"))
    records = {
        model: Record(
            "\n".join(_literal_parts(cell(model + RESPONSE_SUFFIX))),
            _correctness(cell(model), file, number, model),
            _cost(cell(model + COST_SUFFIX), file, number, model + COST_SUFFIX),
        )
        for model in models
    }
    return ReplayRow(cell("sample_id"), "\n\n".join(parts), parts, raw.get("eval_name") or "", records)


_TABLES: dict[tuple[str, int, int], ReplayTable] = {}


def cached_table(path: str | Path) -> ReplayTable:
    """Tables are immutable: one parse per file version per process."""
    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise ReplayDataError(str(file), f"cannot read: {exc.strerror}") from None
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = load_routerbench_csv(file)
    return table


class ReplayProvider:
    def __init__(self, table: ReplayTable) -> None:
        self._table = table
        self._by_prompt = table.index()
        self._by_id: dict[str, list[ReplayRow]] = {}
        for row in table.rows:
            self._by_id.setdefault(row.sample_id, []).append(row)
        self.deployment = f"replay@{Path(table.path).name}"
        self.supports_n = False

    def _by_text(self, call: ModelCall) -> ReplayRow | None:
        user = [m.content for m in call.messages if m.role == "user"]
        if not user:
            return None
        return self._by_prompt.get("\n\n".join(user).strip()) or self._by_prompt.get(user[-1].strip())

    def lookup(self, call: ModelCall) -> ReplayRow:
        metadata = call.request.metadata if call.request is not None else {}
        row: ReplayRow | None
        if "replay_row" in metadata:
            number = metadata["replay_row"]
            rows = self._table.rows
            row = rows[int(number) - 1] if str(number).isdigit() and 0 < int(number) <= len(rows) else None
        elif "sample_id" in metadata:
            same = self._by_id.get(metadata["sample_id"], [])
            row = same[0] if len(same) == 1 else (self._by_text(call) if same else None)
            if row is not None and row.sample_id != metadata["sample_id"]:
                row = None
        else:
            row = self._by_text(call)
        if row is None:
            raise ReplayMissError(self.deployment, "no recorded answer for this prompt")
        return row

    async def complete(self, call: ModelCall) -> Completion:
        self._table.require_model(call.model)
        record = self.lookup(call).records[call.model]
        return Completion(
            (Choice(record.response, finish_reason="stop", label=record.correct),),
            call.model,
            estimate_message_tokens(call.messages),
            estimate_tokens(record.response),
            recorded_cost=record.cost,
            usage_estimated=True,
        )

    async def check(self) -> None:
        """The data was read when the provider was built."""

    async def aclose(self) -> None:
        """Nothing to release."""
