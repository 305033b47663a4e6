"""Writing a bench run out: a markdown table, a JSON file and one PNG per suite."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bench import SuiteReport
from benchmarks.metrics import hull


def _pct(value: object) -> str:
    return "not reached" if value is None else f"{100 * float(value):.1f} %"  # type: ignore[arg-type]


def _num(value: object, digits: int = 4) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def _ci(value: object) -> str:
    if not value:
        return ""
    low, high = value  # type: ignore[misc]
    return f" [{low:.4f}, {high:.4f}]"


def markdown(reports: Sequence[SuiteReport]) -> str:
    lines: list[str] = []
    for report in reports:
        best = report.reference["best_single"]
        lines += [
            f"### {report.suite} — {report.queries} test queries, c_max ${report.c_max:.4f}",
            "",
            f"Best single model: accuracy {best[1]:.3f} at ${best[0]:.4f}.",  # type: ignore[index]
            "",
            "| method | accuracy, total $ (best point) | AIQ [95 % CI] | APGR | CPT(50 %) | CPT(80 %) "
            "| cost to 95 % / 99 % of best (share of its cost) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in report.metrics.items():
            top = max(row["points"], key=lambda p: (p[1], -p[0]))  # type: ignore[arg-type, index]
            lines.append(
                f"| {name} | {top[1]:.3f}, ${top[0]:.4f} | {_num(row['aiq'])}{_ci(row.get('aiq_ci95'))} "
                f"| {_num(row.get('apgr'), 3)} | {_pct(row.get('cpt50'))} | {_pct(row.get('cpt80'))} "
                f"| {_pct(row['cost_to_95'])} / {_pct(row['cost_to_99'])} |")
        lines += ["", *_margins(report)]
    return "\n".join(lines)


def _margins(report: SuiteReport) -> list[str]:
    rows = [(name, row) for name, row in report.metrics.items() if "aiq_margin" in row]
    if not rows:
        return []
    lines = ["Paired bootstrap (same query resamples for every method): AIQ of each combination "
             "minus the better of its parts.", "",
             "| combination | AIQ − max(parts) | 95 % CI | rounds it wins | parts |", "|---|---|---|---|---|"]
    for name, row in rows:
        margin = row["aiq_margin"]
        parts = [report.metrics[r]["aiq"] for r in margin["rivals"]]  # type: ignore[index]
        low, high = margin["ci95"]  # type: ignore[index]
        lines.append(f"| {name} | {float(row['aiq']) - max(parts):+.4f} | [{low:+.4f}, {high:+.4f}] "  # type: ignore[arg-type]
                     f"| {100 * margin['wins']:.0f} % | {', '.join(margin['rivals'])} |")  # type: ignore[index]
    return [*lines, ""]


def _clean(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(reports: Sequence[SuiteReport], path: Path, command: str) -> None:
    payload = {"command": command,
               "suites": {r.suite: {"c_max": r.c_max, "queries": r.queries, "notes": r.notes,
                                    "reference": r.reference,
                                    "methods": r.metrics} for r in reports}}
    path.write_text(json.dumps(_clean(payload), indent=1) + "\n", encoding="utf-8")


def plot(report: SuiteReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 5))
    for name, row in report.metrics.items():
        points = row["points"]
        if row["kind"] == "single":
            axes.scatter(*zip(*points), marker="o", s=22, color="grey", zorder=3)  # type: ignore[misc]
            axes.annotate(name, points[0], fontsize=6, xytext=(3, 2), textcoords="offset points")  # type: ignore[index]
        elif row["kind"] == "oracle":
            axes.scatter(*zip(*points), marker="*", s=90, color="gold", edgecolor="k", label="oracle", zorder=4)  # type: ignore[misc]
        else:
            vertices = hull([tuple(p) for p in points])  # type: ignore[misc]
            xs = [v[0] for v in vertices] + [report.c_max]
            ys = [v[1] for v in vertices] + [vertices[-1][1]]
            style = "--" if row["kind"] == "random" else "-"
            axes.plot(xs, ys, style, label=f"{name} (AIQ {row['aiq']:.3f})")
            if row["kind"] != "random":
                axes.scatter(*zip(*points), s=8)  # type: ignore[misc]
    axes.set_xlabel("total cost on the test queries (USD)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{report.suite}: cost–quality on the test split")
    axes.set_xscale("symlog", linthresh=max(1e-4, report.c_max / 1000))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
