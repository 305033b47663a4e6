"""The replay provider: recorded answers for offline evaluation (formats in ``_replay_data``).

A replay tier answers with the response, correctness and cost recorded for the request's
prompt and the tier's model. Rows are matched by ``request.metadata["replay_row"]`` (the
1-based data row) when given, else by ``request.metadata["sample_id"]`` (RouterBench reuses a
few ids for different prompts: those are told apart by the prompt text), else by the prompt
text (the whole recorded prompt, or its last element).

Files with many samples per query (MoT) support ``n`` and ``seed``: sample 0 is the tier's
answer, and a call with ``seed=s, n=k`` returns recorded samples ``s .. s+k-1`` — the engine's
``sample(k)`` asks for the next unseen ones. The prompt is billed once per call, every
returned sample's generation as output (``tokens = ceil(characters / 4)``). A file without
answer texts answers with an empty text and bills the declared ``output_tokens`` per answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from cascade.errors import ReplayDataError, ReplayMissError
from cascade.providers._replay_data import (
    ReplayFormat,
    ReplayRow,
    ReplayTable,
    Record,
    load_table,
    majority,
)
from cascade.types import Choice, Completion, ModelCall

_TABLES: dict[tuple[str, int, int, ReplayFormat | None], ReplayTable] = {}


def cached_table(path: str | Path, fmt: ReplayFormat | None = None) -> ReplayTable:
    """Tables are immutable: one parse per file version per process."""
    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise ReplayDataError(str(file), f"cannot read: {exc.strerror}") from None
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size, fmt)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = load_table(file, fmt)
    return table


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    prompt_prefix_chars: int = 0  # a fixed prompt prefix the data does not record (billed)
    vote: int | None = None  # answer with the majority of the first `vote` samples (billed)
    output_tokens: int | None = None  # billed per answer where the data records no answer text


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


class ReplayProvider:
    def __init__(self, table: ReplayTable, settings: ReplaySettings | None = None) -> None:
        self._table = table
        self._settings = settings or ReplaySettings()
        self._by_prompt = table.index()
        self._by_id: dict[str, list[ReplayRow]] = {}
        for row in table.rows:
            self._by_id.setdefault(row.sample_id, []).append(row)
        self.deployment = f"replay@{Path(table.path).name}"
        self.supports_n = table.format is ReplayFormat.MOT and self._settings.vote is None

    @property
    def table(self) -> ReplayTable:
        return self._table

    @property
    def output_tokens(self) -> int | None:
        """Billed per answer where the data records no answer text (None: not declared)."""
        return self._settings.output_tokens

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

    def _input_tokens(self, call: ModelCall) -> int:
        chars = sum(len(m.content) for m in call.messages)
        return _tokens(chars + self._settings.prompt_prefix_chars)

    def _choices(self, record: Record, call: ModelCall) -> tuple[tuple[Choice, ...], int]:
        """The answers this call returns and the characters of generation they bill."""
        vote = self._settings.vote
        if not record.samples:
            if call.seed or call.n > 1:
                raise ReplayMissError(self.deployment, "this data records one answer per model: "
                                      "it cannot replay further samples")
            if record.response is None:  # no answer text recorded: the declared length is billed
                return (Choice("", finish_reason="stop", label=record.correct),), 4 * (self._settings.output_tokens or 0)
            return (Choice(record.response, finish_reason="stop", label=record.correct),), len(record.response)
        if vote is not None:
            answers = record.samples[:vote]
            answer = majority(answers)
            label = record.sample_correct[record.samples.index(answer)]
            return (Choice(answer, finish_reason="stop", label=label),), sum(record.output_chars[:vote])
        start = call.seed or 0
        stop = start + max(1, call.n)
        if stop > len(record.samples):
            raise ReplayMissError(self.deployment, f"only {len(record.samples)} samples are recorded "
                                  f"for this prompt; asked for samples {start}..{stop - 1}")
        choices = tuple(Choice(record.samples[i], finish_reason="stop", label=record.sample_correct[i])
                        for i in range(start, stop))
        return choices, sum(record.output_chars[start:stop])

    async def complete(self, call: ModelCall) -> Completion:
        self._table.require_model(call.model)
        record = self._table.record(self.lookup(call), call.model)
        choices, output_chars = self._choices(record, call)
        return Completion(choices, call.model, self._input_tokens(call), _tokens(output_chars),
                          recorded_cost=record.cost, usage_estimated=True)

    async def check(self) -> None:
        """The data was read when the provider was built."""

    async def aclose(self) -> None:
        """Nothing to release."""
