"""Artifact manifests: every file the loader reads is listed, nothing else is present, paths
stay inside, sizes and nesting are bounded, and a policy can pin the manifest's digest
(issue 19 §3, last item)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cascade import Cascade, PolicyError, VerifierArtifactError
from cascade.policy import parse_policy
from verifiers import AnswerKind, ArtifactError, load_agreement
from verifiers._artifacts import MANIFEST, manifest_digest, verify
from verifiers._agreement import AgreementModel
from verifiers._trained import Calibration, CalibrationMap

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_routerbench.csv"
KINDS = frozenset({"agreement"})


def saved(tmp_path: Path) -> Path:
    model = AgreementModel(("a", "b"), np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), -0.5,
                           CalibrationMap(Calibration.PLATT), AnswerKind.CHOICE)
    return model.save(tmp_path / "weights")


def manifest(folder: Path) -> dict[str, object]:
    return json.loads((folder / MANIFEST).read_text())


def rewrite(folder: Path, data: dict[str, object]) -> None:
    (folder / MANIFEST).write_text(json.dumps(data))


def rehash(folder: Path) -> None:
    """What an attacker with write access does: re-hash every file into a consistent manifest."""
    data = manifest(folder)
    data["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                     for name in data["files"]}  # type: ignore[union-attr]
    rewrite(folder, data)


def test_the_manifest_lists_every_file_the_loader_reads(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    assert sorted(manifest(folder)["files"]) == ["meta.json", "weights.safetensors"]  # type: ignore[arg-type]
    assert load_agreement(folder).sources == ("a", "b")


def test_a_manifest_without_meta_json_is_refused(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    data = manifest(folder)
    del data["files"]["meta.json"]  # type: ignore[attr-defined]
    rewrite(folder, data)
    with pytest.raises(ArtifactError, match="does not list meta.json"):
        load_agreement(folder)


@pytest.mark.parametrize("extra", ["notes.txt", "sub/evil.py"])
def test_an_unlisted_file_is_refused(tmp_path: Path, extra: str) -> None:
    folder = saved(tmp_path)
    (folder / extra).parent.mkdir(parents=True, exist_ok=True)
    (folder / extra).write_text("not in the manifest")
    with pytest.raises(ArtifactError, match="not listed in the manifest") as caught:
        load_agreement(folder)
    assert caught.value.path == str(folder / extra)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.bin", "a/../../x", "./meta.json",
                                  "a\\b", ""])
def test_paths_outside_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    folder = saved(tmp_path)
    data = manifest(folder)
    data["files"][name] = "0" * 64  # type: ignore[index]
    rewrite(folder, data)
    with pytest.raises(ArtifactError, match="only relative paths inside"):
        load_agreement(folder)


def test_a_symlink_in_the_directory_is_refused(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    (folder / "link").symlink_to("/etc/hostname")
    with pytest.raises(ArtifactError, match="symlink"):
        load_agreement(folder)


@pytest.mark.parametrize("body", [
    '{"files": ' + "[" * 200_000 + "]" * 200_000 + "}",
    '{"pad": "' + "x" * (2 << 20) + '"}',
])
def test_deep_or_huge_manifests_are_artifact_errors(tmp_path: Path, body: str) -> None:
    folder = saved(tmp_path)
    (folder / MANIFEST).write_text(body)
    with pytest.raises(ArtifactError, match="nested too deeply|larger than"):
        load_agreement(folder)


def test_bad_digests_and_too_many_files_are_refused(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    data = manifest(folder)
    data["files"]["meta.json"] = "not-hex"  # type: ignore[index]
    rewrite(folder, data)
    with pytest.raises(ArtifactError, match="not 64 hex digits"):
        verify(folder, KINDS)
    data["files"] = {f"f{i}": "0" * 64 for i in range(10_001)}
    rewrite(folder, data)
    with pytest.raises(ArtifactError, match="more than 10000 files"):
        verify(folder, KINDS)


def test_rehashing_passes_integrity_but_not_a_pinned_digest(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    pin = manifest_digest(folder)
    assert pin == hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    meta = json.loads((folder / "meta.json").read_text())
    meta["intercept"] = 9.0  # tampered
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="tampered or corrupted: meta.json"):
        load_agreement(folder)
    rehash(folder)
    assert load_agreement(folder).intercept == 9.0  # integrity only: a consistent forgery loads
    with pytest.raises(ArtifactError, match="is not the pinned"):
        load_agreement(folder, sha256=pin)


def test_a_policy_pin_refuses_a_tampered_directory(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    pin = manifest_digest(folder)
    text = ("tiers:\n  - name: a\n    models: [cheap-model, dear-model]\n"
            f"    provider: {{kind: replay, data: {FIXTURE}}}\n    threshold: 0.5\n"
            f"    estimator: {{kind: agreement, answer: choice, artifact: weights, sha256: {pin}}}\n")
    Cascade.from_policy(parse_policy(text), base_dir=tmp_path)  # untouched: loads
    (folder / "meta.json").write_text((folder / "meta.json").read_text().replace("-0.5", "3.0"))
    rehash(folder)
    with pytest.raises(VerifierArtifactError, match="is not the pinned"):
        Cascade.from_policy(parse_policy(text), base_dir=tmp_path)


@pytest.mark.parametrize(("estimator", "message"), [
    ("{kind: verifier, artifact: v, sha256: abc}", "sha256"),
    ("{kind: agreement, answer: choice, sha256: '" + "0" * 64 + "'}", "sha256 pins an artifact"),
])
def test_pins_are_validated_in_the_policy(estimator: str, message: str) -> None:
    text = (f"tiers:\n  - {{name: a, model: m, provider: {{kind: replay, data: x}}, threshold: 0.5, "
            f"estimator: {estimator}}}\n")
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


def test_router_and_verifier_specs_accept_a_pin() -> None:
    pin = "ab" * 32
    text = (f"routing:\n  router: {{kind: knn, artifact: r, sha256: {pin}}}\n"
            "tiers:\n  - {name: a, model: m, provider: {kind: replay, data: x}}\n"
            "  - {name: b, model: n, provider: {kind: replay, data: x}, threshold: 0.5, "
            f"estimator: {{kind: verifier, artifact: v, sha256: {pin}}}}}\n")
    policy = parse_policy(text)
    assert policy.routing is not None and policy.routing.router.sha256 == pin  # type: ignore[union-attr]
    assert policy.tiers[1].estimator.sha256 == pin  # type: ignore[union-attr]
