"""Where code lives: the replay bench (``cascade.bench``) and the tuning code
(``cascade.tuning``) are installed sub-packages apart from the request path; ``benchmarks/``
holds only the scripts behind published figures, and nothing in ``cascade/`` imports it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MOVED = ("cli", "bench", "replay", "methods", "metrics", "report", "detect", "agreement", "sweep",
         "routing", "causal")  # benchmarks/X.py -> cascade/bench/_X.py


def _imports(path: Path) -> list[str]:
    """Every module an ``import`` / ``from ... import`` in the file names (at any depth)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_nothing_in_cascade_imports_benchmarks() -> None:
    files = sorted((ROOT / "cascade").rglob("*.py"))
    assert len(files) > 50
    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in files for name in _imports(path)
                 if name == "benchmarks" or name.startswith("benchmarks.")]
    dynamic = [str(path.relative_to(ROOT)) for path in files
               if "import_module(\"benchmarks" in path.read_text(encoding="utf-8")
               or "import_module('benchmarks" in path.read_text(encoding="utf-8")]
    assert offenders == [] and dynamic == []


def test_the_import_check_sees_a_benchmarks_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from benchmarks.replay import Suite\n    import benchmarks\n")
    assert _imports(probe) == ["benchmarks.replay", "benchmarks"]


def test_the_bench_modules_left_benchmarks() -> None:
    left = [stem for stem in MOVED if (ROOT / "benchmarks" / f"{stem}.py").exists()]
    assert left == []
    old = ROOT / "benchmarks" / "suites"
    assert not [p for p in old.glob("*") if p.suffix in (".py", ".yaml")]  # a stale folder may stay
    for stem in MOVED:
        assert (ROOT / "cascade" / "bench" / f"_{stem}.py").is_file(), stem


def test_the_request_path_imports_no_bench_tuning_plots_or_training_libraries(tmp_path: Path) -> None:
    """``import cascade`` and a replay cascade's runs load neither cascade.bench nor
    cascade.tuning nor matplotlib / scikit-learn / torch (a fresh interpreter)."""
    (tmp_path / "t.csv").write_text(
        "sample_id,prompt,eval_name,small,big,small|model_response,big|model_response,"
        "small|total_cost,big|total_cost\n"
        "q1,['What is 2+2?'],toy,0.0,1.0,['5'],['4'],0.001,0.01\n"
        "q2,['Capital of France?'],toy,1.0,1.0,['Paris'],['Paris'],0.001,0.01\n", encoding="utf-8")
    (tmp_path / "p.yaml").write_text(
        "feature: probe\ntiers:\n"
        "  - {name: small, model: small, provider: {kind: replay, data: t.csv}, "
        "estimator: {kind: self_rating}, threshold: 0.5}\n"
        "  - {name: big, model: big, provider: {kind: replay, data: t.csv}}\n", encoding="utf-8")
    code = """
import sys, anyio, cascade
from pathlib import Path
engine = cascade.Cascade.from_policy(cascade.load_policy('p.yaml'), base_dir=Path('.'))
async def main():
    return [await engine.run('q', metadata={'replay_row': str(row)}) for row in (1, 2)]
results = anyio.run(main)
print([r.tier for r in results], [r.label for r in results])
heavy = ('cascade.bench', 'cascade.tuning', 'benchmarks', 'matplotlib', 'sklearn', 'torch')
print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy)))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ran, loaded = out.stdout.strip().splitlines()
    assert ran.startswith("[") and "1.0" in ran  # the cascade really ran on the replayed answers
    assert loaded == "[]"


def test_the_built_in_suites_are_package_data_read_by_the_safe_loader() -> None:
    from cascade.bench import SUITES
    from cascade.bench._replay import _policy

    assert set(SUITES) == {"arc", "winogrande", "mbpp", "gsm8k", "mot-date"}
    for suite in SUITES.values():
        assert isinstance(suite.policy, Traversable) and suite.policy.is_file()
        policy = _policy(suite, Path("/data"), "test")  # parsed, ${DATA}/${SPLIT} filled in
        assert policy.feature == f"bench-{suite.name}"
        paths = {tier.provider.data for tier in policy.tiers}  # type: ignore[union-attr]
        assert all(str(p).startswith("/data/") for p in paths), paths


def test_the_bench_extra_holds_what_the_bench_imports() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = project["project"]["optional-dependencies"]
    bench = " ".join(extras["bench"])
    assert "matplotlib" in bench and "cascade-engine[ml]" in bench
    assert any("scikit-learn" in d for d in extras["ml"]) and any("torch" in d for d in extras["ml"])
    mutmut = project["tool"]["mutmut"]
    assert "cascade/bench/_metrics.py" in mutmut["only_mutate"]
    assert all((ROOT / p).is_file() for p in mutmut["only_mutate"])


@pytest.mark.parametrize("module", ["cascade.engine", "cascade._build", "cascade.routing"])
def test_request_path_modules_name_no_bench_or_tuning(module: str) -> None:
    path = ROOT / Path(*module.split("."))
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    names = [n for f in files for n in _imports(f)]
    assert names, module
    assert not [n for n in names if n.startswith(("cascade.bench", "cascade.tuning", "benchmarks"))]
