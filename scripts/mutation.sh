#!/usr/bin/env bash
# Mutation testing of the decision modules with mutmut 3 (configured in pyproject.toml's
# [tool.mutmut]: which modules, which tests). NOT part of pytest: it takes a while (about
# 20-40 minutes on 2 cores). Runs in a throw-away copy of the working tree, so the checkout
# is never touched, and prints the kill rate per module and in all (docs/testing.md).
#
#   scripts/mutation.sh                       every decision function listed below
#   scripts/mutation.sh 'verifiers._vote.*'   only mutants whose name matches (mutmut globs)
#   JOBS=2 KEEP=/tmp/mut scripts/mutation.sh  parallel workers; keep the copy (mutmut browse)
set -euo pipefail
cd "$(dirname "$0")/.."
# The decision functions (mutmut names mutants <module>.x_<function>__mutmut_N, methods
# <module>.xǁ<Class>ǁ<method>__mutmut_N): calibration, vote, agreement's consensus and
# judgement, routing selection, the engine's accept/escalate decision and result, metrics.
# Training code (fit_*), I/O and plumbing are left to the ordinary tests.
DECISIONS=(
  'verifiers._calibrate.*'
  'verifiers._vote.*'
  'verifiers._agreement.x_agreement_matrix__*' 'verifiers._agreement.x_consensus__*'
  'verifiers._agreement.xǁAgreementEstimatorǁjudge__*' 'verifiers._agreement.xǁAgreementEstimatorǁpick__*'
  'verifiers._agreement.xǁAgreementEstimatorǁweight__*'
  'cascade.routing._select.*'
  'cascade.engine.x__accepts_anything__*' 'cascade.engine.xǁCascadeǁ_judged__*'
  'cascade.engine.xǁCascadeǁ_start__*' 'cascade.engine.xǁCascadeǁ_finish__*'
  'cascade.bench._metrics.x_hull__*' 'cascade.bench._metrics.x_hull_value__*' 'cascade.bench._metrics.x_aiq__*'
  'cascade.bench._metrics.x_cost_to_reach__*' 'cascade.bench._metrics.x__pgr_curve__*'
  'cascade.bench._metrics.x_apgr__*' 'cascade.bench._metrics.x_cpt__*' 'cascade.bench._metrics.x_curve_points__*'
)
[ $# -gt 0 ] && DECISIONS=("$@")
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
"$PY" -c "import mutmut" 2>/dev/null || { echo "mutmut is not installed: pip install -e '.[dev]'" >&2; exit 2; }
WORK=${KEEP:-$(mktemp -d)}
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
# tracked and new (not ignored) files, as they are now
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && echo "{}"' \
  | tar -cf - -T - | tar -xf - -C "$WORK"
cd "$WORK"
rm -rf mutants
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 PYTHONPATH="$WORK" CASCADE_HYPOTHESIS_PROFILE=mutation
nice "$PY" -m mutmut run --max-children "${JOBS:-1}" "${DECISIONS[@]}" >"$WORK/mutmut-run.log" 2>&1 || {
  tail -40 "$WORK/mutmut-run.log" >&2; exit 1; }
nice "$PY" -m mutmut export-cicd-stats >/dev/null
"$PY" - "$WORK" "${DECISIONS[@]}" <<'PY'
import fnmatch, json, sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code  # mutmut's own verdicts (a timeout is a kill)

work, scope = Path(sys.argv[1]), sys.argv[2:]
per: dict[str, Counter] = {}
for meta in sorted((work / "mutants").rglob("*.py.meta")):
    module = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
    for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in scope):
            continue
        status = status_by_exit_code[code]
        per.setdefault(module, Counter())["killed" if status == "timeout" else status] += 1
total: Counter = Counter()
print(f"{'module':34} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6} {'kill rate':>10}")
for module, c in [*per.items(), ("all", None)]:
    if c is None:
        c = total
    else:
        total.update(c)
    other = sum(c.values()) - c["killed"] - c["survived"] - c["no tests"]
    judged = c["killed"] + c["survived"] + c["no tests"]
    rate = c["killed"] / judged if judged else float("nan")
    print(f"{module:34} {sum(c.values()):8} {c['killed']:7} {c['survived']:9} {c['no tests']:9} {other:6} {rate:10.1%}")
PY
echo "survivors: cd $WORK && $PY -m mutmut results   (set KEEP=dir to keep the copy)"
