"""``cascade train-router`` and ``cascade calibrate-router`` on the hand-written fixture."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.policy import load_policy

FIXTURE = Path(__file__).parent / "fixtures" / "routing_routerbench.csv"
runner = CliRunner()


def _policy(tmp_path: Path) -> Path:
    path = tmp_path / "routed.yaml"
    path.write_text(textwrap.dedent(f"""\
        # routing by topic
        feature: routed
        tiers:
          - {{name: cheap, model: cheap-model, provider: {{kind: replay, data: {FIXTURE}}}}}
          - {{name: mid, model: mid-model, provider: {{kind: replay, data: {FIXTURE}}}}}
          - {{name: dear, model: dear-model, provider: {{kind: replay, data: {FIXTURE}}}}}
        routing:
          mode: both
          router:
            kind: knn
            artifact: knn   # trained below
            threshold: 0.5
        """))
    return path


@pytest.mark.models  # loads MiniLM or SmolLM2 (found by scripts/check_markers.sh)
def test_train_then_calibrate_to_shares_and_to_quality(tmp_path: Path) -> None:
    trained = runner.invoke(app, ["train-router", "--kind", "knn", "--data", str(FIXTURE),
                                  "--out", str(tmp_path / "knn"), "--k", "3", "--test", str(FIXTURE)])
    assert trained.exit_code == 0, trained.output
    assert "knn router for 3 models on 12 queries" in trained.output
    flat = " ".join(trained.output.split())  # rich wraps long lines
    assert re.search(r"settings: k=3, \w+ weighting, prior m=[\d.inf]+ \(those not given as options "
                     r"chosen by 5-fold cross-validation on the data, aiq [\d.]+\)", flat), flat
    assert "Loading weights" not in trained.output  # no transformers progress bar in our output
    assert (tmp_path / "knn" / "manifest.json").is_file()
    policy = _policy(tmp_path)
    shares = runner.invoke(app, ["calibrate-router", "--policy", str(policy), "--data", str(FIXTURE),
                                 "--target", "shares=0.5,0.5,0", "--in-place"])
    assert shares.exit_code == 0, shares.output
    assert "50.0%" in shares.output
    text = policy.read_text()
    assert "# routing by topic" in text and "artifact: knn   # trained below" in text
    threshold = load_policy(policy).routing.router.threshold  # type: ignore[union-attr]
    assert isinstance(threshold, tuple) and len(threshold) == 3
    quality = runner.invoke(app, ["calibrate-router", "--policy", str(policy), "--data", str(FIXTURE),
                                  "--target", "quality=1.0"])
    assert quality.exit_code == 0, quality.output
    assert "routing only, on this data: accuracy 1.0000" in quality.output


def test_bad_training_data_exits_2_naming_the_column(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train-router", "--kind", "mf", "--data", str(FIXTURE),
                                 "--out", str(tmp_path / "x"), "--models", "cheap-model,gpt-9"])
    assert result.exit_code == 2
    assert "gpt-9 not in the data" in result.output
    pairwise = runner.invoke(app, ["train-router", "--kind", "knn", "--data", str(FIXTURE),
                                   "--out", str(tmp_path / "x"), "--pairwise"])
    assert pairwise.exit_code == 2 and "MF routers only" in pairwise.output


@pytest.mark.models  # loads MiniLM
def test_a_knn_mf_router_trains_names_both_halves_and_routes_from_a_policy(tmp_path: Path) -> None:
    import anyio

    from cascade import Cascade
    from cascade.errors import CascadeError
    from cascade.routing import MeanModel, load_router_model

    trained = runner.invoke(app, ["train-router", "--kind", "knn-mf", "--data", str(FIXTURE),
                                  "--out", str(tmp_path / "knn-mf"), "--k", "3"])
    assert trained.exit_code == 0, trained.output
    flat = " ".join(trained.output.split())
    assert "knn-mf router for 3 models on 12 queries" in flat
    assert re.search(r"settings: k=3, \w+ weighting, prior m=[\d.inf]+ .*; MF dim=\d+, epochs=\d+, "
                     r"weight_decay=[\d.e-]+ ", flat), flat
    model = load_router_model(tmp_path / "knn-mf")
    assert isinstance(model, MeanModel) and model.knn.k == 3
    refused = runner.invoke(app, ["train-router", "--kind", "knn-mf", "--data", str(FIXTURE),
                                  "--out", str(tmp_path / "other"), "--epochs", "5"])
    assert refused.exit_code == 2 and "--epochs" in refused.output
    policy = _policy(tmp_path)
    policy.write_text(policy.read_text().replace("kind: knn\n", "kind: knn-mf\n").replace("artifact: knn ", "artifact: knn-mf "))
    engine = Cascade.from_policy(load_policy(policy), base_dir=tmp_path)
    result = anyio.run(engine.run, "Question: What is 7 plus 5?\nAnswer:")
    assert result.answer == "12" and result.attempts[0].tier == 0  # an arithmetic query starts cheap
    mismatch = _policy(tmp_path)  # kind knn, artifact of kind knn-mf: refused, naming both
    mismatch.write_text(mismatch.read_text().replace("artifact: knn ", "artifact: knn-mf "))
    with pytest.raises(CascadeError, match="knn-mf router artifact, but the policy says kind 'knn'"):
        Cascade.from_policy(load_policy(mismatch), base_dir=tmp_path)
