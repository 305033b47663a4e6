"""``cascade run | validate | schema``. Configuration errors exit with code 2 before any
model is called; a run that produced no answer exits with 1."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cascade._api import policy_path
from cascade.engine import Cascade
from cascade.errors import CascadeError, ConfigError, ProviderError, RequestError, RunError
from cascade.policy import load_policy, policy_json_schema
from cascade.types import Attempt, Result, attempt_to_dict
from verifiers import ArtifactError

app = typer.Typer(add_completion=False, no_args_is_help=True,
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
    for column in ("tier", "model", "conf/thr", "decision", "tokens", "cost", "latency"):
        table.add_column(column, justify="right" if column in ("cost", "latency") else "left",
                         overflow="fold")
    for a in attempts:
        table.add_row(f"{a.tier} {a.tier_name}", a.model, _confidence(a), _decision(a),
                      f"{a.input_tokens}/{a.output_tokens}", _money(a.cost), f"{a.latency_s:.2f}s")
    return table


def _confidence(a: Attempt) -> str:
    if a.estimator is None and a.confidence is None:
        return "-" if a.threshold is None else f"- / {a.threshold:.2f}"
    shown = "failed" if a.confidence is None else f"{a.confidence:.3f}"
    return f"{shown}/{a.threshold:.2f}" if a.threshold is not None else shown


def _decision(a: Attempt) -> str:
    colour = {"accept": "green", "escalate": "yellow", "reject": "yellow"}.get(a.decision.value, "red")
    text = f"[{colour}]{a.decision.value}[/]"
    detail = a.error or a.estimator_error
    return f"{text}: {detail[:80]}" if detail else text


def _print(result: Result) -> None:
    status = "accepted" if result.accepted else f"not accepted ({result.stop_reason.value})"
    out.print(result.answer, markup=False, highlight=False)
    out.print()
    out.print(_attempts_table(result.attempts, f"attempts (trace {result.trace_id})"))
    out.print(f"answered by tier {result.tier} ({result.model}), {status}; "
              f"{result.escalations} escalation(s), cost {_money(result.cost)}, "
              f"{result.latency_s:.2f}s", highlight=False)


async def _run(path: Path, prompt: str, check: bool) -> Result:
    engine = Cascade.from_yaml(path)
    async with engine:
        if check:
            await engine.check()
        return await engine.run(prompt)


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="the prompt to answer")],
    policy: Annotated[Path | None, typer.Option(help="a policy YAML file")] = None,
    feature: Annotated[str | None, typer.Option(help="a feature name: <policies>/<name>.yaml")] = None,
    policies: Annotated[Path | None, typer.Option(help="policies directory "
                                                   "(default $CASCADE_POLICIES_DIR, else bundled)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    check: Annotated[bool, typer.Option(help="check every provider is reachable first")] = True,
) -> None:
    """Answer PROMPT through a cascade and show every attempt."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if policy is not None and feature is not None:
        raise _fail("give --policy or --feature, not both", EXIT_BAD_INPUT)
    try:
        path = policy if policy is not None else policy_path(feature or "default", policies)
        result = anyio.run(_run, path, prompt, check)
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


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="policy YAML files")]) -> None:
    """Validate policy files; list every problem with its key path and line."""
    failed = False
    for file in files:
        try:
            policy = load_policy(file)
        except CascadeError as exc:
            failed = True
            err.print(f"[red]✗[/] {exc}", highlight=False, soft_wrap=True)
        else:
            out.print(f"[green]✓[/] {file}: feature {policy.feature!r}, {len(policy.tiers)} tier(s)",
                      highlight=False)
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
