"""Writing a bench run out: a markdown table, a JSON file and one PNG per suite."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cascade.bench._bench import SuiteReport
from cascade.bench._metrics import hull


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
        lines += ["", ran_line(report), "", *_margins(report), *_notes(report)]
    return "\n".join(lines)


def ran_line(report: SuiteReport) -> str:
    """What was measured: the single models by name, the references, and every method or
    router that produced a curve (what did not run is a note)."""
    singles = [c.name for c in report.curves if c.kind == "single"]
    asked = ", ".join(sorted(report.ran)) or "none"
    return (f"Ran: single models ({', '.join(singles)}), random mixing, oracle, oracle frontier; "
            f"methods and routers: {asked}.")


def _notes(report: SuiteReport) -> list[str]:
    """What did not run and why, what was detected or chosen: in bench.md, not only the JSON."""
    if not report.notes:
        return []
    return ["Notes:", "", *(f"- {note}" for note in report.notes), ""]


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
                                    "reference": r.reference, "ran": sorted(r.ran),
                                    "methods": r.metrics} for r in reports}}
    path.write_text(json.dumps(_clean(payload), indent=1) + "\n", encoding="utf-8")


def _dense(vertices: Sequence[tuple[float, float]], c_max: float, per_segment: int = 40) -> tuple[list[float], list[float]]:
    """The hull as many short pieces: mixing two settings is linear in cost, which is a curve
    on a log cost axis, so each segment is sampled rather than drawn straight."""
    points = [*vertices, (max(c_max, vertices[-1][0]), vertices[-1][1])]
    xs, ys = [points[0][0]], [points[0][1]]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for t in np.linspace(0, 1, per_segment)[1:]:
            xs.append(x0 + t * (x1 - x0))
            ys.append(y0 + t * (y1 - y0))
    return xs, ys


def _label_singles(axes, singles: Sequence[tuple[str, tuple[float, float]]]) -> None:  # type: ignore[no-untyped-def]
    """Model names beside their points, nudged down the page until no two overlap (in the
    axes' display space, so it works on the log axis)."""
    placed: list[tuple[float, float]] = []
    right = axes.get_window_extent().x1
    for name, point in sorted(singles, key=lambda s: -s[1][1]):
        x, y = axes.transData.transform(point)
        offset = 2.0
        while any(abs(x - px) < 90 and abs(y + offset - py) < 8 for px, py in placed):
            offset -= 8
        placed.append((x, y + offset))
        leftward = x > right - 90  # near the right edge: the name goes left of its point
        axes.annotate(name, point, fontsize=6, xytext=(-4 if leftward else 4, offset),
                      textcoords="offset points", ha="right" if leftward else "left",
                      arrowprops={"arrowstyle": "-", "lw": 0.3, "color": "grey"} if offset < 0 else None)


def plot(report: SuiteReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(11, 5.5))
    costs = [p[0] for row in report.metrics.values() for p in row["points"]]  # type: ignore[attr-defined]
    positive = [c for c in costs if c > 0]
    if positive and len(positive) == len(costs):
        axes.set_xscale("log")
    else:
        axes.set_xscale("symlog", linthresh=max(1e-4, report.c_max / 1000))
    singles = []
    for name, row in report.metrics.items():
        points = [tuple(p) for p in row["points"]]  # type: ignore[attr-defined]
        if not points:
            continue
        if row["kind"] == "single":
            axes.scatter(*zip(*points), marker="o", s=22, color="grey", zorder=3)
            singles.append((name, points[0]))
        elif row["kind"] == "oracle" and len(points) == 1:
            axes.scatter(*zip(*points), marker="*", s=90, color="gold", edgecolor="k", label=name, zorder=4)
        else:
            xs, ys = _dense(hull(points), report.c_max)
            style = {"random": "--", "oracle": ":"}.get(str(row["kind"]), "-")
            line = axes.plot(xs, ys, style, lw=1.2, label=f"{name} (AIQ {row['aiq']:.3f})",
                             color="goldenrod" if row["kind"] == "oracle" else None)[0]
            if row["kind"] not in ("random", "oracle"):
                axes.scatter(*zip(*points), s=10, color=line.get_color(), zorder=3)
    axes.set_xlabel("total cost on the test queries (USD)")
    axes.set_ylabel("accuracy (mean quality)")
    axes.set_title(f"{report.suite}: cost–quality on the test split")
    axes.grid(alpha=0.3)
    figure.tight_layout(rect=(0, 0, 0.68, 1))
    _label_singles(axes, singles)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
