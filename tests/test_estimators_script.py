"""``benchmarks/estimators.py --merge`` keeps the commands behind its published file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import estimators


def test_a_merge_keeps_every_command_in_the_header_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = {"data": "arc", "model": "m", "kind": "sklearn", "auroc": 0.5, "ece": 0.1, "train_s": 1.0,
             "train_n": 10, "test_n": 5, "test_accuracy": 0.6}
    (tmp_path / "estimators.json").write_text(json.dumps(
        {"vote": {}, "risk": [], "verifiers": [first], "commands": [".venv/bin/python benchmarks/estimators.py"]}))
    monkeypatch.setattr(estimators, "OUT", tmp_path)
    monkeypatch.setattr(estimators, "verifiers_table", lambda *a, **k: [dict(first, auroc=0.7)])
    monkeypatch.setattr(estimators, "markdown", lambda vote, verifiers, risk: f"rows {len(verifiers)}\n")
    estimators.main(["--merge", "--kinds", "sklearn"])
    header = (tmp_path / "estimators.md").read_text().splitlines()[0]
    assert header == ("Produced by `.venv/bin/python benchmarks/estimators.py`, then "
                      "`.venv/bin/python benchmarks/estimators.py --merge --kinds sklearn`")
    saved = json.loads((tmp_path / "estimators.json").read_text())
    assert saved["commands"][-1].endswith("--merge --kinds sklearn") and len(saved["commands"]) == 2
    assert [r["auroc"] for r in saved["verifiers"]] == [0.7]  # the merged row replaced the old one
