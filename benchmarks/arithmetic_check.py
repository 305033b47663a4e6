"""How often ``verifiers.check_arithmetic`` judges and flags recorded answers, and how good the
flagged ones are, on every file in ``../shared/data``.

    .venv/bin/python benchmarks/arithmetic_check.py [--data DIR]

Per file: answers read, arithmetic links judged, answers with a false step, and the mean quality
of the flagged answers against the others (RouterBench and RouteLLM files; MoT DATE's JSON
records samples without a per-sample grade, so only the counts); then the same per model, for
the models with a flagged answer.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from verifiers import check_arithmetic

csv.field_size_limit(1 << 30)


def _text(cell: str) -> str:
    """RouterBench writes a response as a Python-literal list of strings."""
    try:
        parts = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return cell
    return " ".join(map(str, parts)) if isinstance(parts, list) else cell


def _graded(path: Path) -> Iterator[tuple[str, str, float | None]]:
    """(model, answer text, quality) for every model's answer in a RouterBench or RouteLLM CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    routerbench = any(c.endswith("|model_response") for c in rows[0])
    suffix = "|model_response" if routerbench else "_response"
    for column in (c for c in rows[0] if c.endswith(suffix)):
        model = column.removesuffix(suffix)
        for row in rows:
            label = row.get(model, "")
            quality = {"True": 1.0, "False": 0.0}.get(label) if not routerbench else (
                float(label) if label not in ("", None) else None)
            yield model, _text(row[column]), quality


def _samples(path: Path) -> Iterator[tuple[str, str, float | None]]:
    for record in json.loads(path.read_text(encoding="utf-8")):
        generated = record.get("generated", [])
        if isinstance(generated, str):
            try:
                generated = ast.literal_eval(generated)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                generated = [generated]
        for sample in generated:
            yield path.parent.name, str(sample), None


def _line(name: str, judged: list[tuple[int, tuple[str, ...], float | None]]) -> str:
    links = sum(checked for checked, _, _ in judged)
    examples = [false[0] for _, false, _ in judged if false]
    flagged = [q for _, false, q in judged if false and q is not None]
    rest = [q for _, false, q in judged if not false and q is not None]
    line = (f"{name}: {len(judged)} answers, {links} links judged, {len(examples)} flagged "
            f"({len(examples) / max(len(judged), 1):.2%})")
    if flagged and rest:
        line += f"; mean quality flagged {sum(flagged) / len(flagged):.3f} vs the rest {sum(rest) / len(rest):.3f}"
    if examples:
        line += "; e.g. " + "; ".join(f"`{e}`" for e in examples[:3])
    return line


def measure(name: str, answers: Iterator[tuple[str, str, float | None]]) -> list[str]:
    by_model: dict[str, list[tuple[int, tuple[str, ...], float | None]]] = {}
    for model, text, quality in answers:
        found = check_arithmetic(text)
        by_model.setdefault(model, []).append((found.checked, found.false, quality))
    lines = [f"- {_line(name, [j for judged in by_model.values() for j in judged])}"]
    if len(by_model) > 1:
        lines += [f"  - {_line(model, judged)}" for model, judged in by_model.items()
                  if any(false for _, false, _ in judged)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no recorded data at {args.data} (give --data DIR)", file=sys.stderr)
        return 2
    for path in sorted(args.data.glob("routerbench/*.csv")) + sorted(args.data.glob("routellm_gsm8k/*.csv")):
        print("\n".join(measure(f"{path.parent.name}/{path.name}", _graded(path))))
    for path in sorted(args.data.glob("mot_date/*/*.json")):
        print("\n".join(measure(f"mot_date/{path.parent.name}/{path.name}", _samples(path))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
