"""Recorded LLM answers, read as-is from the three published formats (pure parsing, no engine).

| format | file | models | cost |
|---|---|---|---|
| ``routerbench`` | RouterBench 0-shot CSV: ``sample_id, prompt, eval_name``, one 0/1 column per model, ``<model>|model_response``, ``<model>|total_cost`` | any number | recorded per query |
| ``routellm`` | RouteLLM response CSV: ``prompt``, one True/False column per model, ``<model>_response`` | any number | none: the tier's ``price`` × tokens |
| (either, without responses) | the quality columns only: RouteLLM's MMLU files (``prompt`` + one True/False column per model), a RouterBench file without ``|model_response`` (with or without ``|total_cost``) | any number | recorded, else the tier's ``price`` × (prompt tokens, the provider's declared ``output_tokens``) |
| ``mot`` | MoT JSON list: ``question, answer, generated, results`` (many samples per question) | one per file (the tier names it) | none: the tier's ``price`` × tokens |

A file without response columns has no answer texts: its records' ``response`` is None (not
an empty string) and ``ReplayTable.has_responses`` is False, so methods that compare or judge
answers know they cannot run. Without ``|model_response`` / ``|total_cost`` / ``_response``
columns every column except the metadata ones (``prompt``, ``sample_id``, ``eval_name``,
``oracle_model_to_route_to``) is a model's quality column; ``sample_id`` marks RouterBench.

Rows are numbered from 1 (the first data row / the first JSON record) in errors and in
``replay_row`` metadata.

Quality cells: ``0`` / ``1`` and ``True`` / ``False`` (correctness), or any graded score in
[0, 1] (an LLM judge's grade, MT-Bench scores divided by 10, the share of code tests passed).
Every metric uses the mean quality; correctness is its 0/1 special case. A cell that is not a
number in [0, 1] is a ``ReplayDataError`` naming the file, row and column.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cascade.errors import ReplayDataError
from cascade.types import ReplayFormat

RESPONSE_SUFFIX = "|model_response"
COST_SUFFIX = "|total_cost"
ROUTELLM_SUFFIX = "_response"
ANY_MODEL = ""  # the key of the one model of a single-model file (MoT)
METADATA = ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")  # not model columns


@dataclass(frozen=True, slots=True)
class Record:
    """One model's recorded answer to one query. ``samples`` are further recorded answers
    (MoT); ``sample_correct`` their labels; ``output_chars`` the billed generation of each."""

    response: str | None  # None: the file records no answer texts (quality columns only)
    correct: float | None  # quality in [0, 1] (0/1: correctness); None where the cell is empty
    cost: float | None  # None where the data has no cost (priced from tokens)
    samples: tuple[str, ...] = ()
    sample_correct: tuple[bool, ...] = ()
    output_chars: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplayRow:
    sample_id: str
    prompt: str  # the prompt parts joined by a blank line
    parts: tuple[str, ...]
    eval_name: str
    records: Mapping[str, Record]
    gold: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayTable:
    path: str
    models: tuple[str, ...]  # empty for a single-model file: any tier model name maps to it
    rows: tuple[ReplayRow, ...]
    format: ReplayFormat = ReplayFormat.ROUTERBENCH
    has_responses: bool = True  # False: quality columns only, no answer texts
    recorded_costs: bool = True  # False: a RouterBench file without ``|total_cost`` columns

    @property
    def has_costs(self) -> bool:
        return self.format is ReplayFormat.ROUTERBENCH and self.recorded_costs

    @property
    def has_labels_per_model(self) -> bool:
        """One recorded answer per model and query (not a multi-sample file)."""
        return self.format is not ReplayFormat.MOT

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
        if self.models and model not in self.models:
            raise ReplayDataError(
                self.path, f"model {model!r} is not in the data (models: {', '.join(self.models)})"
            )

    def record(self, row: ReplayRow, model: str) -> Record:
        return row.records[model if self.models else ANY_MODEL]


def literal_parts(text: str) -> tuple[str, ...]:
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


def _correctness(cell: str, path: str, row: int, column: str, hint: str = "") -> float | None:
    """A quality cell: True/False, 0/1 or a graded score in [0, 1]; None when empty."""
    text = cell.strip()
    if text == "":
        return None
    if text.lower() in ("true", "false"):
        return 1.0 if text.lower() == "true" else 0.0
    try:
        value = float(text)
    except ValueError:
        raise ReplayDataError(path, f"quality {cell!r} is not a number in [0, 1] or True/False{hint}",
                              row=row, column=column) from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise ReplayDataError(path, f"quality {cell!r} is outside [0, 1] (graded scores are "
                              "accepted in [0, 1]; rescale e.g. a 1-10 grade by 10)",
                              row=row, column=column)
    return value


def _cost(cell: str, path: str, row: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ReplayDataError(path, f"cost {cell!r} is not a number", row=row, column=column) from None
    if not math.isfinite(value) or value < 0:
        raise ReplayDataError(path, f"cost {cell!r} is not a non-negative number", row=row, column=column)
    return value


def detect_format(path: str | Path, header: Sequence[str] | None) -> ReplayFormat:
    """MoT by the ``.json`` suffix; RouterBench by ``|model_response`` / ``|total_cost`` columns
    or, in a file of quality columns only, by ``sample_id``; else RouteLLM (``prompt``)."""
    if str(path).lower().endswith(".json"):
        return ReplayFormat.MOT
    columns = list(header or [])
    if any(c.endswith((RESPONSE_SUFFIX, COST_SUFFIX)) for c in columns):
        return ReplayFormat.ROUTERBENCH
    if any(c.endswith(ROUTELLM_SUFFIX) for c in columns):
        return ReplayFormat.ROUTELLM
    if "sample_id" in columns:
        return ReplayFormat.ROUTERBENCH
    if "prompt" in columns:
        return ReplayFormat.ROUTELLM
    raise ReplayDataError(str(path), f"no '<model>{RESPONSE_SUFFIX}' (RouterBench), "
                          f"'<model>{ROUTELLM_SUFFIX}' (RouteLLM) or 'prompt' column")


@dataclass(frozen=True, slots=True)
class _Columns:
    """What a header holds: the models, and whether it records answer texts and costs."""

    models: tuple[str, ...]
    responses: bool
    costs: bool

    @property
    def hint(self) -> str:
        """Added to a bad quality cell's error where a stray column may be the cause."""
        if self.responses:
            return ""
        return (" (a file without response columns reads every column but "
                f"{' / '.join(METADATA)} as a model's quality)")


def _quality_only(header: Sequence[str], path: str) -> _Columns:
    """No response (or cost) columns: every non-metadata column is a model's quality."""
    models = tuple(c for c in header if c not in METADATA and c.strip())  # "": a saved index
    if not models:
        raise ReplayDataError(path, "no model columns (every column is prompt / sample_id / "
                              "eval_name / oracle_model_to_route_to)")
    return _Columns(models, responses=False, costs=False)


def _suffixed(header: Sequence[str], suffix: str) -> tuple[str, ...]:
    return tuple(c[: -len(suffix)] for c in header if c.endswith(suffix))


def _routerbench_models(header: Sequence[str], path: str) -> _Columns:
    missing = [c for c in ("sample_id", "prompt") if c not in header]
    if missing:
        raise ReplayDataError(path, f"missing column(s) {', '.join(missing)}")
    answered, costed = _suffixed(header, RESPONSE_SUFFIX), _suffixed(header, COST_SUFFIX)
    if not answered and not costed:
        return _quality_only(header, path)
    models = tuple(dict.fromkeys(answered + costed))  # a model with one but not the other: missing
    needed = [""] + ([RESPONSE_SUFFIX] if answered else []) + ([COST_SUFFIX] if costed else [])
    for model in models:
        for column in (model + s for s in needed):
            if column not in header:
                raise ReplayDataError(path, f"missing column {column!r}", column=column)
    return _Columns(models, responses=bool(answered), costs=bool(costed))


def _routellm_models(header: Sequence[str], path: str) -> _Columns:
    if "prompt" not in header:
        raise ReplayDataError(path, "missing column(s) prompt")
    models = _suffixed(header, ROUTELLM_SUFFIX)
    if not models:
        return _quality_only(header, path)
    for model in models:
        if model not in header:
            raise ReplayDataError(path, f"missing column {model!r}", column=model)
    return _Columns(models, responses=True, costs=False)


def load_table(path: str | Path, fmt: ReplayFormat | None = None) -> ReplayTable:
    """Read a recorded-answers file in any of the three formats (detected when ``fmt`` is
    None). Every problem is a ``ReplayDataError`` naming the file, and the row and column
    where there is one."""
    file = str(path)
    try:
        if fmt is ReplayFormat.MOT or (fmt is None and file.lower().endswith(".json")):
            return _load_mot(file)
        return _load_csv(file, fmt)
    except OSError as exc:
        raise ReplayDataError(file, f"cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReplayDataError(file, f"not a readable CSV: {exc}") from None


def load_routerbench_csv(path: str | Path) -> ReplayTable:
    return load_table(path, ReplayFormat.ROUTERBENCH)


def _load_csv(file: str, fmt: ReplayFormat | None) -> ReplayTable:
    csv.field_size_limit(sys.maxsize)
    with open(file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        fmt = fmt or detect_format(file, header)
        if fmt is ReplayFormat.ROUTERBENCH:
            columns = _routerbench_models(header, file)
            read = _routerbench_row
        else:
            columns = _routellm_models(header, file)
            read = _routellm_row
        rows = [read(_Cells(raw, number, file), columns) for number, raw in enumerate(reader, 1)]
    if not rows:
        raise ReplayDataError(file, "no data rows")
    return ReplayTable(file, columns.models, tuple(rows), fmt, columns.responses, columns.costs)


@dataclass(frozen=True, slots=True)
class _Cells:
    raw: Mapping[str, str | None]
    number: int
    file: str

    def __call__(self, column: str) -> str:
        value = self.raw.get(column)
        if value is None:
            raise ReplayDataError(self.file, "the row is shorter than the header",
                                  row=self.number, column=column)
        return value


def _routerbench_row(cell: _Cells, columns: _Columns) -> ReplayRow:
    parts = literal_parts(cell("prompt"))
    records = {
        model: Record(
            "\n".join(literal_parts(cell(model + RESPONSE_SUFFIX))) if columns.responses else None,
            _correctness(cell(model), cell.file, cell.number, model, columns.hint),
            _cost(cell(model + COST_SUFFIX), cell.file, cell.number, model + COST_SUFFIX)
            if columns.costs else None,
        )
        for model in columns.models
    }
    return ReplayRow(cell("sample_id"), "\n\n".join(parts), parts,
                     cell.raw.get("eval_name") or "", records)


def _routellm_row(cell: _Cells, columns: _Columns) -> ReplayRow:
    prompt = cell("prompt")
    records = {
        model: Record(cell(model + ROUTELLM_SUFFIX) if columns.responses else None,
                      _correctness(cell(model), cell.file, cell.number, model, columns.hint), None)
        for model in columns.models
    }
    return ReplayRow(str(cell.number), prompt, (prompt,), "", records)


def _load_mot(file: str) -> ReplayTable:
    with open(file, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ReplayDataError(file, f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
        except RecursionError:
            raise ReplayDataError(file, "not usable JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer beyond Python's digit limit
            raise ReplayDataError(file, f"not usable JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ReplayDataError(file, f"not UTF-8 text: {exc.reason}") from None
    if not isinstance(data, list) or not data:
        raise ReplayDataError(file, "expected a non-empty JSON list of records")
    rows = tuple(_mot_row(record, number, file) for number, record in enumerate(data, 1))
    return ReplayTable(file, (), rows, ReplayFormat.MOT)


def _mot_field(record: Mapping[str, object], key: str, number: int, file: str) -> object:
    if key not in record:
        raise ReplayDataError(file, f"missing field {key!r}", row=number, column=key)
    return record[key]


def _string_list(value: object, number: int, file: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = literal_parts(value) if value.strip().startswith("[") else (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise ReplayDataError(file, f"{key!r} is not a non-empty list", row=number, column=key)
    return tuple("" if v is None else str(v) for v in value)


def _mot_row(record: object, number: int, file: str) -> ReplayRow:
    if not isinstance(record, dict):
        raise ReplayDataError(file, "a record is not a JSON object", row=number)
    question = str(_mot_field(record, "question", number, file))
    gold = str(_mot_field(record, "answer", number, file)).strip()
    generated = _string_list(_mot_field(record, "generated", number, file), number, file, "generated")
    results = _string_list(_mot_field(record, "results", number, file), number, file, "results")
    if len(results) != len(generated):
        raise ReplayDataError(file, f"{len(results)} results for {len(generated)} generated samples",
                              row=number, column="results")
    answers = tuple(r.strip() for r in results)
    labels = tuple(a == gold for a in answers)
    recorded = Record(answers[0], labels[0], None, answers, labels, tuple(len(g) for g in generated))
    return ReplayRow(str(number), question, (question,), "", {ANY_MODEL: recorded}, gold)


def majority(answers: Sequence[str]) -> str:
    """The most frequent answer; ties go to the one seen first (MoT's ``prediction``)."""
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)
