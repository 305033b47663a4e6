"""``cascade run | check | validate | schema`` and ``--version``. Configuration errors exit with code 2 before any
model is called; a run that produced no answer exits with 1."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cascade import __version__
from cascade._api import policy_path
from cascade._fallback import Served, probe_logprobs
from cascade._lint import Severity, lint_policy
from cascade._request import PromptLike
from cascade.engine import Cascade
from cascade.errors import CascadeError, ConfigError, ProviderError, RequestError, RunError
from cascade.policy import policy_json_schema
from cascade.types import TRUNCATED, Attempt, Decision, Result, attempt_to_dict
from verifiers import ArtifactError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Answer each LLM request with as little model as it can get away with.")
out = Console()
err = Console(stderr=True)

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


def _fail(message: str, code: int) -> typer.Exit:
    message = escape(message.encode("utf-8", "backslashreplace").decode("utf-8"))  # printable as is
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def _money(value: float) -> str:
    return f"${value:.6f}" if value else "$0"


def _attempts_table(attempts: Sequence[Attempt], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    finish = any(a.finish_reason is not None for a in attempts)  # no answer, no column
    columns = ("tier", "model", "conf/thr", "decision", *(("finish",) if finish else ()),
               "tokens", "cost", "latency")
    for column in columns:
        table.add_column(column, justify="right" if column in ("cost", "latency") else "left",
                         overflow="fold")
    for a in attempts:
        table.add_row(f"{a.tier} {a.tier_name}", a.model, _confidence(a), _decision(a),
                      *((a.finish_reason or "-",) if finish else ()),
                      f"{a.input_tokens}/{a.output_tokens}", _money(a.cost), f"{a.latency_s:.2f}s")
    return table


def _confidence(a: Attempt) -> str:
    if a.estimator is None and a.confidence is None:
        return "-" if a.threshold is None else f"- / {a.threshold:.4g}"
    shown = "failed" if a.confidence is None else f"{a.confidence:.3f}"
    return f"{shown}/{a.threshold:.4g}" if a.threshold is not None else shown


def _decision(a: Attempt) -> str:
    colour = {"accept": "green", "escalate": "yellow", "reject": "yellow"}.get(a.decision.value, "red")
    text = f"[{colour}]{a.decision.value}[/]"
    degenerate = a.details.get("degenerate")
    detail = a.error or a.estimator_error or (
        f"degenerate answer ({', '.join(map(str, degenerate))})"  # type: ignore[call-overload]
        if degenerate else None) or (
        "truncated (max_tokens)" if a.finish_reason in TRUNCATED and a.decision is not
        Decision.ACCEPT else None)
    return f"{text}: {detail[:80]}" if detail else text


def _print(result: Result) -> None:
    status = "accepted" if result.accepted else f"not accepted ({result.stop_reason.value})"
    out.print(result.answer, markup=False, highlight=False)
    out.print()
    out.print(_attempts_table(result.attempts, f"attempts (trace {result.trace_id})"))
    if result.finish_reason in TRUNCATED:
        status += ", truncated by max_tokens"
    out.print(f"answered by tier {result.tier} ({result.model}), {status}; "
              f"{result.escalations} escalation(s), {result.fallbacks} fallback(s), "
              f"cost {_money(result.cost)}, "
              f"{result.latency_s:.2f}s", highlight=False)


@dataclass(frozen=True, slots=True)
class _Ask:
    """What ``cascade run`` asks, as ``Cascade.run`` takes it."""

    prompt: PromptLike
    max_tokens: int | None = None
    temperature: float | None = None
    deadline_s: float | None = None


async def _run(path: Path, ask: _Ask, check: bool) -> Result:
    engine = Cascade.from_yaml(path)
    async with engine:
        if check:
            await engine.check()
        return await engine.run(ask.prompt, deadline_s=ask.deadline_s,
                                max_tokens=ask.max_tokens, temperature=ask.temperature)


def _prompt(prompt: str, system: str | None) -> PromptLike:
    """``-`` reads the prompt from standard input; ``--system`` adds a system message."""
    text = sys.stdin.read() if prompt == "-" else prompt
    if system is None:
        return text
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="the prompt to answer; - reads it from stdin")],
    policy: Annotated[Path | None, typer.Option(help="a policy YAML file")] = None,
    feature: Annotated[str | None, typer.Option(help="a feature name: <policies>/<name>.yaml")] = None,
    policies: Annotated[Path | None, typer.Option(help="policies directory "
                                                   "(default $CASCADE_POLICIES_DIR, else bundled)")] = None,
    system: Annotated[str | None, typer.Option(help="a system message (replaces the tiers' "
                                               "system_prompt; base models with a completion "
                                               "template have no system role)")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="answer length limit for every tier "
                                                   "(default: the policy's)")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature for every "
                                                      "tier, 0..2 (default: the policy's)")] = None,
    deadline: Annotated[float | None, typer.Option(help="seconds for the whole run (default: "
                                                   "the policy's deadline_s)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    check: Annotated[bool, typer.Option("--check/--no-check",
                                        help="check every provider is reachable first")] = True,
) -> None:
    """Answer PROMPT through a cascade and show every attempt."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if policy is not None and feature is not None:
        raise _fail("give --policy or --feature, not both", EXIT_BAD_INPUT)
    if deadline is not None and not deadline > 0:
        raise _fail(f"--deadline must be a positive number of seconds, not {deadline:g}",
                    EXIT_BAD_INPUT)
    try:
        path = policy if policy is not None else policy_path(feature or "default", policies)
        ask = _Ask(_prompt(prompt, system), max_tokens, temperature, deadline)
        result = anyio.run(_run, path, ask, check)
    except (ConfigError, RequestError, ArtifactError) as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    except RunError as exc:
        if as_json:
            print(json.dumps({"error": str(exc), "attempts": [attempt_to_dict(a) for a in exc.attempts]}))
        else:
            err.print(_attempts_table(exc.attempts, "attempts"))
        raise _fail(str(exc), EXIT_RUN_FAILED) from None
    except ProviderError as exc:  # from the reachability check: nothing was run
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print(result)


async def _check(path: Path) -> list[Served]:
    async with Cascade.from_yaml(path) as engine:
        await engine.check()
        return await probe_logprobs(engine.tiers)


@app.command()
def check(
    policy: Annotated[Path | None, typer.Option(help="a policy YAML file")] = None,
    feature: Annotated[str | None, typer.Option(help="a feature name: <policies>/<name>.yaml")] = None,
    policies: Annotated[Path | None, typer.Option(help="policies directory "
                                                   "(default $CASCADE_POLICIES_DIR, else bundled)")] = None,
) -> None:
    """Reach every provider, and ask each tier whose estimator needs token logprobs for a
    one-token answer: say which estimators an upstream cannot serve (exit 2 if one cannot and
    the tier has no fallback_estimator). Makes one tiny billed call per such tier."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if policy is not None and feature is not None:
        raise _fail("give --policy or --feature, not both", EXIT_BAD_INPUT)
    try:
        path = policy if policy is not None else policy_path(feature or "default", policies)
        served = anyio.run(_check, path)
    except (ConfigError, ProviderError) as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    table = Table(title=f"{path}", title_justify="left")
    for column in ("tier", "deployment", "estimator", "token logprobs", "verdict"):
        table.add_column(column, overflow="fold")
    for s in served:
        logprobs = "not needed" if s.has_logprobs is None else ("returned" if s.has_logprobs
                                                                else "[red]none[/]")
        verdict = ("[green]ok[/]" if s.has_logprobs is not False else
                   f"[yellow]fallback {s.fallback}[/]" if s.ok else "[red]cannot serve it[/]")
        table.add_row(s.tier, s.deployment, s.estimator or "-", logprobs, verdict)
    out.print(table)
    for s in served:
        if s.has_logprobs is False:
            line = (f"served by fallback {s.fallback}" if s.ok else "cannot serve its estimator: "
                    "the first answer raises LogprobsUnavailableError; set fallback_estimator "
                    "on the tier or choose an estimator that needs no logprobs")
            (out if s.ok else err).print(f"tier {s.tier!r}: {s.deployment} returns no token "
                                         f"logprobs, which {s.estimator} needs: {line}",
                                         highlight=False, soft_wrap=True)
    if not all(s.ok for s in served):
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="policy YAML files")],
    strict: Annotated[bool, typer.Option("--strict", help="warnings (unset secrets, tiers "
                                         "without a price) are errors too")] = False,
) -> None:
    """Validate policy files; list every problem with its key path and line, then the warnings
    (an unset secret, a remote tier without a price) and notes."""
    failed = False
    for file in files:
        try:
            policy, findings = lint_policy(file)
        except CascadeError as exc:
            failed = True
            err.print(f"[red]✗[/] {exc}", highlight=False, soft_wrap=True)
            continue
        warnings = [f for f in findings if f.severity is Severity.WARNING]
        bad = strict and bool(warnings)
        failed |= bad
        mark = "[red]✗[/]" if bad else "[green]✓[/]"
        (err if bad else out).print(f"{mark} {file}: feature {policy.feature!r}, "
                                    f"{len(policy.tiers)} tier(s)", highlight=False)
        for finding in findings:
            colour = "red" if bad and finding.severity is Severity.WARNING else (
                "yellow" if finding.severity is Severity.WARNING else "blue")
            err.print(f"  [{colour}]{finding.severity.value}:[/] {finding}", highlight=False,
                      soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--out", help="write to a file")] = None,
) -> None:
    """Print the JSON Schema of policy files (for editors)."""
    text = json.dumps(policy_json_schema(), indent=2)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")


def output_file(policy: Path, out_file: Path | None, in_place: bool) -> Path | None:
    """Where ``calibrate*`` write the calibrated policy: ``--out FILE``, or the policy itself
    with ``--in-place``; None: print only."""
    if out_file is not None and in_place:
        raise _fail("give --out or --in-place, not both", EXIT_BAD_INPUT)
    return policy if in_place else out_file


def written(policy: Path, target: Path | None, what: str) -> None:
    if target is None:
        out.print(f"nothing written: pass --out FILE to write a calibrated copy of {policy}, "
                  "or --in-place to overwrite it", highlight=False)
    else:
        out.print(f"wrote {what} into {target}", highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"cascade {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Answer each LLM request with as little model as it can get away with."""


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
