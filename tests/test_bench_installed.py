"""``cascade bench`` as a user who installed the wheel runs it: the wheel is built from this
checkout, installed (``--no-deps``) into a fresh venv outside it, and the venv's ``cascade``
script benches a two-model RouterBench-format file written to a temporary folder, with the
current directory outside the checkout and no PYTHONPATH.

The heavy dependencies (torch, transformers, scikit-learn, matplotlib, the MiniLM package) are
reused from the interpreter running the tests through a ``.pth`` file in the new venv: a
full ``pip install 'cascade-engine[bench]'`` downloads about 1 GB (done by hand once, see
docs/benchmarks.md). The package itself, its suites and its entry point come from the wheel
alone: the test checks that ``cascade`` is imported from the venv, not from the checkout."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("acme/small-7b-chat", "acme/large-70b-chat")  # tiers: acme-small-7b-chat, acme-large-70b-chat


def _write_csv(path: Path, n: int, seed: int) -> None:
    """A RouterBench 0-shot CSV: multiple-choice questions, a cheap model right ~55 % of the
    time and a dear one ~90 %, their letter answers and recorded costs."""
    rng = np.random.default_rng(seed)
    skill = {MODELS[0]: 0.55, MODELS[1]: 0.9}
    cost = {MODELS[0]: 0.0001, MODELS[1]: 0.002}
    header = ["sample_id", "prompt", "eval_name", *MODELS,
              *(f"{m}|model_response" for m in MODELS), *(f"{m}|total_cost" for m in MODELS)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i in range(n):
            truth = "ABCD"[int(rng.integers(4))]
            hard = float(rng.random())
            right = {m: bool(rng.random() < skill[m] * (1.2 - 0.4 * hard)) for m in MODELS}
            answers = {m: truth if right[m] else "ABCD"[("ABCD".index(truth) + 1 + int(rng.integers(3))) % 4]
                       for m in MODELS}
            topic = ("physics", "history", "biology", "maths")[i % 4]
            prompt = f"Question {seed}-{i} on {topic} (difficulty {hard:.2f}): pick A, B, C or D."
            writer.writerow([f"toy.{i}", repr([prompt]), "toy",
                             *(1.0 if right[m] else 0.0 for m in MODELS),
                             *(repr([answers[m]]) for m in MODELS),
                             *(cost[m] * (1 + hard) for m in MODELS)])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv outside the checkout with the freshly built wheel installed; returns its bin/."""
    import hatchling  # noqa: F401  (the [test] extra: builds the wheel without the network)
    base = tmp_path_factory.mktemp("installed")
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("cascade_engine-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cascade/bench/_suites/arc.yaml" in names and "cascade/tuning/__init__.py" in names
    assert not [n for n in names if n.startswith("benchmarks/")]
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_heavy_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    return env_dir / "bin"


def _user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "CASCADE_BENCH_OUT", "CASCADE_BENCH_DATA", "VIRTUAL_ENV")}
    return {**env, "HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
            "COLUMNS": "200"}


def test_the_wheel_runs_cascade_bench_on_a_users_csv(installed: Path, tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    _write_csv(work / "train.csv", 60, seed=1)
    _write_csv(work / "test.csv", 60, seed=2)
    env = _user_env(home)
    where = subprocess.run([str(installed / "python"), "-c", "import cascade.bench; print(cascade.bench.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent)  # the wheel's, not the checkout's
    out = subprocess.run([str(installed / "cascade"), "bench", "--csv", "test.csv", "--train", "train.csv",
                          "--bootstrap", "20"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    console = out.stdout + out.stderr
    # which methods ran, by name, and the models by their names (not m0 / m1)
    ran = [line for line in console.splitlines() if "Ran: single models" in line]
    assert ran and "acme-small-7b-chat, acme-large-70b-chat" in ran[0]
    # every method that applies, by default: the verifier runs; vote (no samples) and agreement
    # (two models make no ensemble below the best) are notes, not silent gaps
    assert "methods and routers: verifier." in ran[0]
    assert "vote: judges no tier of this suite (not run)" in console
    assert "agreement: too few models below the most accurate one" in console
    assert "| acme-small-7b-chat |" in console and "| acme-large-70b-chat |" in console
    assert "| m0 |" not in console
    # written outside the repository and the working folder, by default under ~/.cache
    results = sorted((home / ".cache" / "cascade-bench" / "results").glob("*/bench.md"))
    assert len(results) == 1, console
    folder = results[0].parent
    assert not folder.is_relative_to(ROOT) and not folder.is_relative_to(work)
    report = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    (suite,) = report["suites"].values()
    assert suite["ran"] == ["verifier"]
    assert {"acme-small-7b-chat", "acme-large-70b-chat", "random", "oracle"} <= set(suite["methods"])
    assert (folder / "test.png").stat().st_size > 1000
    assert sorted(p.name for p in work.iterdir()) == ["test.csv", "train.csv"]  # nothing written beside the data


def test_the_installed_bench_asks_for_the_data_of_the_built_in_suites(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run([str(installed / "cascade"), "bench", "arc", "--out", str(tmp_path / "out")],
                         cwd=tmp_path, env=_user_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "--data" in out.stderr and "CASCADE_BENCH_DATA" in out.stderr
    assert not (tmp_path / "out" / "bench.md").exists()
