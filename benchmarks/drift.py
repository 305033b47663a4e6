"""Simulated drift on recorded answers (issue 22's figure): does the SLO monitor notice when
the traffic changes under a calibrated cascade, and does the audit see what it costs?

The cascade is the recorded-data one of docs/howto-recorded-data.md on RouterBench: mistral-7b
answers first as evidence only, mixtral-8x7b is accepted when it agrees with it (agreement
estimator, letter choice), else gpt-4 answers. Calibration on ARC train gives mixtral's
escalation rate (the SLO's ``calibrated`` rate; its target is that + 5 pp) and its
false-accept rate (the audit's alpha). Traffic is then ARC test followed by Winogrande test,
one request every 10 s of simulated time, through the real engine, with the monitor
(default windows, storm and drift detectors) evaluating after each request on the simulated
clock and the audit sampler re-asking gpt-4 for a share of mixtral's accepted answers.

Reported: false alarms before the switch (target 0), requests from the switch to each
detector's first alert, the audit's false-accept estimate per phase (Clopper–Pearson
interval) against the truth from the recorded labels.

    .venv/bin/python -m benchmarks.drift [--data ../shared/data] [--out benchmarks/results/drift]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio

from cascade import Cascade, parse_policy
from cascade.policy import Policy
from cascade.providers import load_routerbench_csv
from cascade.state import MemoryStore
from cascade.telemetry import AuditSampler, EscalationTarget, SloMonitor, clopper_pearson
from cascade.tuning._calibrate import Target, TargetKind, choose, record_chain
from cascade.types import Attempt, Decision, Result
from verifiers import AnswerKind

CHEAP, MID, DEAR = "mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview"
WORSE = "WizardLM/WizardLM-13B-V1.2"  # the mid model's stand-in in the `model` scenario
THRESHOLD = 0.75  # mid's, as calibrated on ARC train
POLICY = """\
feature: drift
tiers:
  - {{name: small, model: {cheap}, provider: {{kind: replay, data: '{data}'}},
     estimator: {{kind: agreement, answer: choice}}, threshold: never}}
  - {{name: mid, model: {mid}, provider: {{kind: replay, data: '{data}'}},
     estimator: {{kind: agreement, answer: choice}}, threshold: {threshold}}}
  - {{name: large, model: {dear}, provider: {{kind: replay, data: '{data}'}}}}
telemetry: {{metrics: false}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Phase:
    name: str
    requests: int = 0
    escalations: int = 0  # out of mid
    judged: int = 0  # answers judged at mid
    accepted_mid: int = 0
    wrong_accepted_mid: int = 0  # truth: accepted at mid with label 0
    audited: int = 0
    audit_false: int = 0
    alerts: list[tuple[int, str]] = field(default_factory=list)  # (request in phase, key)


def combined_csv(files: list[Path], out: Path) -> None:
    """One replay table holding every row of ``files`` (RouterBench columns)."""
    rows, columns = [], []
    for path in files:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns += [c for c in reader.fieldnames or () if c not in columns]
            rows += list(reader)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({**row, "": str(i)})


def mid_attempt(result: Result) -> Attempt | None:
    """The mid tier's attempt, if it ran."""
    return next((a for a in result.attempts if a.tier_name == "mid"), None)


async def calibrate(engine: Cascade, prompts: list[str]) -> tuple[float, float]:
    """On ARC train: mid's escalation rate and its false-accept rate (wrong among accepted)."""
    judged = escalated = accepted = wrong = 0
    for prompt in prompts:
        result = await engine.run(prompt)
        attempt = mid_attempt(result)
        if attempt is None or attempt.decision not in (Decision.ACCEPT, Decision.ESCALATE):
            continue
        judged += 1
        escalated += attempt.decision is Decision.ESCALATE
        if attempt.decision is Decision.ACCEPT:
            accepted += 1
            wrong += (attempt.label or 0.0) < 0.5
    return escalated / judged, wrong / max(accepted, 1)


async def simulate(data: Path, scenario: str, audit_rate: float, seed: int,
                   step_s: float, audit_window: int, recal_window: int) -> dict[str, object]:
    """``dataset``: ARC test, then Winogrande test. ``model``: ARC test, its second half
    answered by a worse mid model (mistral-7b's recorded answers in mixtral's place). After
    the switch, the first ``recal_window`` requests of the new traffic are served as before;
    then mid's threshold is recalibrated on them (``cascade calibrate``'s code path) and the
    rest of the new traffic is served with it."""
    router = data / "routerbench"
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "all.csv"
        files = [router / "arc_challenge_train.csv", router / "arc_challenge_test.csv",
                 router / "winograde_test.csv"]
        combined_csv(files, table)
        prompts = [[r.prompt for r in load_routerbench_csv(f).rows] for f in files]
        policy = parse_policy(POLICY.format(cheap=CHEAP, mid=MID, dear=DEAR, data=table,
                                            threshold=THRESHOLD))
        async with Cascade.from_policy(policy) as engine:
            calibrated, alpha = await calibrate(engine, prompts[0])
        if scenario == "dataset":
            plan = [("ARC test", MID, prompts[1]), ("Winogrande test", MID, prompts[2])]
        else:
            half = len(prompts[1]) // 2
            plan = [("ARC test, mixtral", MID, prompts[1][:half]),
                    ("ARC test, worse mid model", WORSE, prompts[1][half:])]
        (new_name, new_mid, new_prompts) = plan[1]
        window, rest = new_prompts[:recal_window], new_prompts[recal_window:]
        plan[1] = (f"{new_name}, first {len(window)}", new_mid, window)
        clock = Clock()
        target = min(0.45, calibrated + 0.05)
        monitor = SloMonitor([EscalationTarget("drift", "mid", target, "large", calibrated)],
                             store=MemoryStore(clock=clock), clock=clock,
                             tiers=("small", "mid", "large"))
        audit: AuditSampler | None = None
        phases: list[Phase] = []
        series: list[dict[str, object]] = []
        threshold, recal = THRESHOLD, None
        rows = row_numbers(table)
        for step, (name, mid, batch) in enumerate([*plan, (None, new_mid, rest)]):
            text = POLICY.format(cheap=CHEAP, mid=mid, dear=DEAR, data=table,
                                 threshold=_yaml(threshold))
            if name is None:  # recalibrate on the window of new traffic, then serve the rest
                recal = await recalibrate(parse_policy(text), window, rest, rows, calibrated)
                threshold = recal["threshold"]
                name = f"{new_name}, rest, recalibrated"
                text = POLICY.format(cheap=CHEAP, mid=mid, dear=DEAR, data=table,
                                     threshold=_yaml(threshold))
            async with Cascade.from_policy(parse_policy(text),
                                           observers=[monitor.observer()]) as engine:
                if audit is None:
                    audit = AuditSampler(engine.tiers[2], 2, rate=audit_rate,
                                         answer=AnswerKind.CHOICE, alpha=alpha,
                                         rng=random.Random(seed), window=audit_window)
                engine.observers.observers += (audit,)
                phases.append(Phase(name))
                await run_phase(engine, monitor, audit, clock, step_s, phases[-1], batch, series)
        assert recal is not None
        after = phases[-1].escalations / max(phases[-1].judged, 1)
        recal.update(live_after=after, within_2pp=abs(after - calibrated) <= 0.02)
    return {"scenario": scenario, "calibrated_escalation": calibrated, "target": target,
            "alpha": alpha, "audit_rate": audit_rate, "audit_window": audit_window,
            "seconds_per_request": step_s, "recalibration": recal,
            "phases": [summary(p) for p in phases], "series": series}


def _yaml(threshold: float) -> str:
    return "never" if math.isinf(threshold) else repr(threshold)


def row_numbers(table: Path) -> dict[str, int]:
    """Prompt -> its 1-based row in the replay table (the first, as the replay finds it)."""
    out: dict[str, int] = {}
    for i, row in enumerate(load_routerbench_csv(table).rows, 1):
        out.setdefault(row.prompt, i)
    return out


async def recalibrate(policy: Policy, window: list[str], rest: list[str], rows: dict[str, int],
                      rate: float) -> dict[str, object]:
    """``cascade calibrate --target escalation=RATE`` on ``window`` for the mid tier (small
    stays evidence-only: it never accepts, so every query reaches mid): the same recording
    (``record_chain``: each tier's estimator sees the cheaper tiers' answers) and the same
    choice (``choose``). Also recorded on ``rest``: mid's escalation rate there with the old
    and the new threshold, offline (the live rate with the new one is measured by running)."""
    async with Cascade.from_policy(policy) as engine:
        tiers = engine.tiers
        on_window = await record_chain(tiers, [(p, rows[p]) for p in window])
        on_rest = await record_chain(tiers, [(p, rows[p]) for p in rest])
    choice = choose(Target(TargetKind.ESCALATION, rate), on_window[1:])
    threshold = choice.thresholds[0]
    mid_window, mid_rest = on_window[1].confidence, on_rest[1].confidence
    return {"target": rate, "window": len(window), "rest": len(rest), "threshold": threshold,
            "levels": sorted({round(float(c), 6) for c in mid_window}),
            "achievable": sorted({float((mid_window < level).mean())
                                  for level in [*set(mid_window.tolist()), math.inf]}),
            "window_before": float((mid_window < THRESHOLD).mean()),
            "window_after": float((mid_window < threshold).mean()),
            "rest_before": float((mid_rest < THRESHOLD).mean()),
            "rest_after": float((mid_rest < threshold).mean())}


async def run_phase(engine: Cascade, monitor: SloMonitor, audit: AuditSampler, clock: Clock,
                    step_s: float, phase: Phase, prompts: list[str],
                    series: list[dict[str, object]]) -> None:
    audited, false = audit.audited, audit.false_accepts
    for prompt in prompts:
        clock.now += step_s
        result = await engine.run(prompt)
        phase.requests += 1
        attempt = mid_attempt(result)
        if attempt is not None and attempt.decision in (Decision.ACCEPT, Decision.ESCALATE):
            phase.judged += 1
            phase.escalations += attempt.decision is Decision.ESCALATE
            if attempt.decision is Decision.ACCEPT:
                phase.accepted_mid += 1
                phase.wrong_accepted_mid += (attempt.label or 0.0) < 0.5
        was = audit.estimate().alerting
        await audit.drain()
        if audit.estimate().alerting and not was:
            phase.alerts.append((phase.requests, "drift/mid/audit firing"))
        for alert in await monitor.evaluate():
            phase.alerts.append((phase.requests, f"{alert.key} {alert.state.value}"))
        series.append({"phase": phase.name, "request": len(series) + 1,
                       "escalated": None if attempt is None else
                       attempt.decision is Decision.ESCALATE,
                       "active": monitor.active() + (["drift/mid/audit"]
                                                     if audit.estimate().alerting else [])})
    phase.audited, phase.audit_false = audit.audited - audited, audit.false_accepts - false


def summary(phase: Phase) -> dict[str, object]:
    low, high = clopper_pearson(phase.audit_false, phase.audited)
    first: dict[str, int] = {}
    for at, text in phase.alerts:
        key, state = text.rsplit(" ", 1)
        if state == "firing":
            first.setdefault(key.rsplit("/", 1)[1], at)
    return {**asdict(phase), "escalation_rate": phase.escalations / max(phase.judged, 1),
            "false_accept_truth": phase.wrong_accepted_mid / max(phase.accepted_mid, 1),
            "audit_estimate": phase.audit_false / max(phase.audited, 1),
            "audit_interval": [low, high], "first_alert_at_request": first}


def figure(report: dict[str, object], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["series"]  # type: ignore[index]
    window, xs, rates = 50, [], []
    flags = [s["escalated"] for s in series]  # type: ignore[index, union-attr]
    for i in range(len(flags)):
        recent = [f for f in flags[max(0, i - window + 1): i + 1] if f is not None]
        xs.append(i + 1)
        rates.append(sum(recent) / len(recent) if recent else 0.0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), height_ratios=[2, 1])
    top.plot(xs, rates, label="mid escalation rate (last 50 requests)")
    top.axhline(report["calibrated_escalation"], ls=":", c="grey", label="calibrated")  # type: ignore[arg-type]
    top.axhline(report["target"], ls="--", c="black", label="SLO target")  # type: ignore[arg-type]
    switch = report["phases"][0]["requests"]  # type: ignore[index]
    top.axvline(switch + 0.5, c="red", label=f"switch: {report['phases'][1]['name']}")  # type: ignore[index]
    recal = switch + report["phases"][1]["requests"]  # type: ignore[index]
    top.axvline(recal + 0.5, c="blue", ls="-.", label="recalibrated on the requests before")
    for kind, colour in (("fast", "orange"), ("slow", "purple"), ("drift", "green"),
                         ("storm", "brown"), ("audit", "red")):
        firing = [i + 1 for i, s in enumerate(series) if any(  # type: ignore[arg-type]
            k.endswith("/" + kind) for k in s["active"])]  # type: ignore[index]
        if firing:
            top.scatter(firing, [1.02] * len(firing), s=4, c=colour, label=f"{kind} alert firing")
    top.set_ylim(0, 1.06)
    top.set_xlabel("request")
    top.legend(fontsize=7, loc="lower right")
    names, estimates, lows, highs, truths = [], [], [], [], []
    for phase in report["phases"]:  # type: ignore[attr-defined]
        names.append(phase["name"])
        estimates.append(phase["audit_estimate"])
        lows.append(phase["audit_estimate"] - phase["audit_interval"][0])
        highs.append(phase["audit_interval"][1] - phase["audit_estimate"])
        truths.append(phase["false_accept_truth"])
    bottom.errorbar(names, estimates, yerr=[lows, highs], fmt="o", capsize=4,
                    label="audit estimate (95 % Clopper–Pearson)")
    bottom.scatter(names, truths, marker="x", c="red", label="truth (recorded labels)")
    bottom.axhline(report["alpha"], ls=":", c="grey", label="calibrated false-accept (alpha)")  # type: ignore[arg-type]
    bottom.set_ylabel("false-accept rate of mid")
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"drift-{report['scenario']}.png", dpi=120)


def markdown(report: dict[str, object]) -> str:
    lines = [(f"Scenario `{report['scenario']}`. Calibrated escalation rate of mid (ARC train): "
              f"{report['calibrated_escalation']:.3f}; "
             f"SLO target {report['target']:.3f}; calibrated false-accept rate (alpha) "
             f"{report['alpha']:.3f}; audit rate {report['audit_rate']} (estimate over the last "
             f"{report['audit_window']} audits); one request every "
             f"{report['seconds_per_request']:g} s."), "",
             ("| phase | requests | escalation rate | first alert (requests into the phase) "
              "| audited | audit false-accept [95 % CI] | truth |"),
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in report["phases"]:  # type: ignore[attr-defined]
        first = ", ".join(f"{k}: {v}" for k, v in p["first_alert_at_request"].items()) or "none"
        low, high = p["audit_interval"]
        lines.append(f"| {p['name']} | {p['requests']} | {p['escalation_rate']:.3f} | {first} "
                     f"| {p['audited']} | {p['audit_estimate']:.3f} [{low:.3f}, {high:.3f}] "
                     f"| {p['false_accept_truth']:.3f} |")
    r = report["recalibration"]  # type: ignore[index]
    lines += ["", (f"Recalibration (`cascade calibrate --target escalation="
                   f"{r['target']:.3f}`'s recording and choice, on the first {r['window']} "
                   f"requests of the new traffic): mid's threshold {THRESHOLD} -> "
                   f"{_yaml(r['threshold'])} (its confidence takes {len(r['levels'])} values "
                   f"there: {', '.join(f'{v:g}' for v in r['levels'])}). Escalation rate of mid, "
                   f"target {r['target']:.3f} ± 0.020:"), "",
              "| data | old threshold | recalibrated |", "| --- | --- | --- |",
              (f"| calibration window ({r['window']}) | {r['window_before']:.3f} | "
               f"{r['window_after']:.3f} |"),
              (f"| rest of the new traffic ({r['rest']}), offline | {r['rest_before']:.3f} | "
               f"{r['rest_after']:.3f} |"),
              (f"| rest of the new traffic, live through the engine | - | "
               f"{r['live_after']:.3f} |"), "",
              (f"The escalation rates any threshold can give on the window: "
               f"{', '.join(f'{a:.3f}' for a in r['achievable'])}."), "",
              f"Back within ±2 pp of the target: **{'yes' if r['within_2pp'] else 'no'}**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "CASCADE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/drift"))
    parser.add_argument("--scenario", choices=["dataset", "model"], default="dataset",
                        help="dataset: ARC then Winogrande; model: a worse mid model mid-stream")
    parser.add_argument("--audit-rate", type=float, default=0.25)
    parser.add_argument("--audit-window", type=int, default=40, help="audits per estimate")
    parser.add_argument("--seconds-per-request", type=float, default=10.0)
    parser.add_argument("--recal-window", type=int, default=150, help="requests of the new "
                        "traffic recalibrated on (then the rest is served recalibrated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = anyio.run(simulate, args.data, args.scenario, args.audit_rate, args.seed,
                       args.seconds_per_request, args.audit_window, args.recal_window)
    args.out.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in report.items() if k != "series"}  # (the figure has the series)
    (args.out / f"drift-{args.scenario}.json").write_text(json.dumps(kept, indent=1))
    (args.out / f"drift-{args.scenario}.md").write_text(markdown(report))
    figure(report, args.out)
    print(markdown(report))


if __name__ == "__main__":
    main()
