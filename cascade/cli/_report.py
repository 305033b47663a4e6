"""``cascade report``: per feature, runs and cost, and per tier the escalation rate against its
SLO, acceptances, fallbacks and cost, the audit's false-accept estimate with its interval
against its target, with the alerts firing — a rich table, or ``--json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.table import Table

from cascade.cli._app import EXIT_BAD_INPUT, _fail, _money, app, out
from cascade.errors import CascadeError, ConfigError
from cascade.policy import Policy, RedisStoreSpec, load_policy
from cascade.state import RedisStore
from cascade.telemetry import monitor_from_spec

_HELP = ("Escalation rates per tier against their SLO, acceptances, fallbacks and cost, the "
         "audit's false-accept estimate per tier (audited answers, interval, target), and "
         "the alerts firing. Reads the shared store (Redis) of the policy's resilience.store "
         "— the counters every process adds to — or, with --snapshot, the JSON file the "
         "monitor rewrites after each evaluation (the policy's slo.snapshot). From Redis, "
         "'firing' means the alert condition holds now (this command keeps no alert history).")


class ReportError(ConfigError):
    """The report cannot be made from what was given (no SLO, no shared store, bad file)."""


def _from_store(policy: Policy, window_s: float | None) -> dict[str, object]:
    if policy.slo is None:
        raise ReportError("the policy has no slo: block, so nothing is counted")
    store_spec = policy.resilience.store
    if not isinstance(store_spec, RedisStoreSpec):
        raise ReportError("the policy keeps its counters in memory (no resilience.store of "
                          "kind redis): nothing is shared to read; give --snapshot FILE "
                          "(written by the monitor when the policy sets slo.snapshot)")

    async def read() -> dict[str, object]:
        store = RedisStore(store_spec.url.get_secret_value(), prefix=store_spec.prefix,
                           timeout_s=store_spec.timeout_s)
        try:
            audit = policy.telemetry.audit
            monitor = monitor_from_spec(policy.slo, policy.feature or "default", store,  # type: ignore[arg-type]
                                        tiers=[t.name for t in policy.tiers],
                                        audit_alpha=None if audit is None else audit.alpha)
            monitor.sinks = ()  # a report sends nothing
            await monitor.evaluate()
            return await monitor.snapshot(window_s)
        finally:
            await store.aclose()

    return anyio.run(read)


def _from_file(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ReportError(f"{path} is not a snapshot (JSON): {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("features"), dict):
        raise ReportError(f"{path} is not a snapshot written by the SLO monitor")
    return data


def _table(feature: str, data: dict[str, object], window_s: float) -> Table:
    table = Table(title=f"{feature}: {data['runs']} runs, {_money(float(data['cost']))} "  # type: ignore[arg-type]
                  f"in the last {window_s:g} s", title_justify="left")
    table.caption = ("judged: answers judged at the tier; esc: escalated for low confidence; "
                     "acc: accepted; fb: fell back after an error")
    for column in ("tier", "judged", "esc", "rate", "SLO", "acc", "fb", "cost"):
        table.add_column(column, justify="left" if column == "tier" else "right", no_wrap=True)
    for row in data["tiers"]:  # type: ignore[attr-defined]
        target = row["target"]
        rate = row["escalation_rate"]
        slo = "-" if target is None else f"≤ {100 * target:.0f}%"
        shown = f"{100 * rate:.1f}%" if row["judged"] else "-"
        if target is not None and row["judged"] and rate > target:
            shown = f"[bold red]{shown}[/]"
        table.add_row(row["tier"], str(row["judged"]), str(row["escalations"]), shown, slo,
                      str(row["accepted"]), str(row["fallbacks"]), _money(row["cost"]))
    return table


def _audit_table(feature: str, data: dict[str, object]) -> Table | None:
    """Per audited tier: answers audited, false accepts, the estimate with its interval,
    the SLO's target (None when nothing is audited nor targeted)."""
    rows = [(row["tier"], row["audit"]) for row in data["tiers"]  # type: ignore[attr-defined]
            if row.get("audit")]
    if not rows:
        return None
    table = Table(title=f"{feature}: audit of accepted answers", title_justify="left")
    table.caption = ("audited: accepted answers re-asked of the judge; false: the judge "
                     "disagreed; FA SLO: slo.false_accept")
    for column in ("tier", "audited", "false", "false-accept rate \\[interval]", "FA SLO"):
        table.add_column(column, justify="left" if column == "tier" else "right", no_wrap=True)
    for tier, audit in rows:
        table.add_row(tier, *_audit_cells(audit))
    return table


def _audit_cells(audit: dict[str, object]) -> tuple[str, str, str, str]:
    """audited, false, "estimate [low–high]" (red when the lower bound is above the limit),
    limit."""
    limit = audit["limit"]
    shown = "-"
    if audit["audited"]:
        shown = (f"{100 * audit['rate']:.1f}% \\[{100 * audit['low']:.1f}–"  # type: ignore[operator]
                 f"{100 * audit['high']:.1f}%]")  # type: ignore[operator]
        if limit is not None and audit["low"] > limit:  # type: ignore[operator]
            shown = f"[bold red]{shown}[/]"
    return (str(audit["audited"]), str(audit["false_accepts"]), shown,
            "-" if limit is None else f"≤ {100 * limit:.0f}%")  # type: ignore[operator]


def _drift_line(drift: dict[str, object] | None) -> str | None:
    """Router input drift: live queries far from the training set, against the training's."""
    if not drift:
        return None
    return (f"router input drift: {drift['below']} of {drift['queries']} queries below the "
            f"cold-start similarity {drift['min_similarity']:.3f}: "  # type: ignore[str-format]
            f"{100 * drift['share']:.1f}% \\[{100 * drift['low']:.1f}–"  # type: ignore[operator]
            f"{100 * drift['high']:.1f}%] (training {100 * drift['baseline']:.1f}%, "  # type: ignore[operator]
            f"limit {100 * drift['limit']:.1f}%), PSI {drift['psi']:.2f}")  # type: ignore[operator,str-format]


def _audit_line(audit: dict[str, object] | None) -> str | None:
    """Every audited tier together, against the calibrated alpha."""
    if not audit:
        return None
    audited, rate, limit = audit["audited"], audit["rate"], audit["limit"]
    text = f"audit: {audited} accepted answers re-asked of the judge"
    if audited:
        text += (f", {audit['false_accepts']} false accepts: {100 * rate:.1f}% "  # type: ignore[operator]
                 f"\\[{100 * audit['low']:.1f}–{100 * audit['high']:.1f}%, "  # type: ignore[operator]
                 f"{100 * audit['confidence']:.0f}% interval]")  # type: ignore[operator]
    if limit is not None:
        text += f"; calibrated alpha {100 * limit:.1f}%"  # type: ignore[operator]
    return text


@app.command("report", help=_HELP)
def report_command(
    policy: Annotated[Path | None, typer.Option(help="the feature's policy: read its "
                                                "resilience.store (Redis)")] = None,
    snapshot: Annotated[Path | None, typer.Option(help="a snapshot file written by the "
                                                  "monitor (slo.snapshot) instead")] = None,
    window: Annotated[float | None, typer.Option(help="seconds to report on (default: the "
                                                 "longest SLO window)", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    if (policy is None) == (snapshot is None):
        raise _fail("give either --policy (read the shared store) or --snapshot FILE",
                    EXIT_BAD_INPUT)
    if snapshot is not None and window is not None:
        raise _fail("--window applies to --policy: a snapshot covers the window it was "
                    "written with", EXIT_BAD_INPUT)
    try:
        data = _from_file(snapshot) if snapshot is not None else \
            _from_store(load_policy(policy), window)  # type: ignore[arg-type]
    except CascadeError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    if as_json:
        out.print_json(json.dumps(data))
        return
    features: dict[str, dict[str, object]] = data["features"]  # type: ignore[assignment]
    if not features:
        out.print("no runs counted yet")
    for feature, counts in features.items():
        out.print(_table(feature, counts, float(data["window_s"])))  # type: ignore[arg-type]
        audits = _audit_table(feature, counts)
        if audits is not None:
            out.print(audits)
        drift = _drift_line(counts.get("input_drift"))  # type: ignore[arg-type]
        if drift is not None:
            out.print(drift, highlight=False)
        audit = _audit_line(counts.get("audit"))  # type: ignore[arg-type]
        if audit is not None:
            out.print(audit, highlight=False)
        alerts = counts.get("alerts") or []
        out.print("alerts firing: " + (", ".join(alerts) if alerts else "none"),  # type: ignore[arg-type]
                  highlight=False)
