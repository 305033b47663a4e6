"""Safe artifact directories for trained verifiers and routers: arrays in safetensors, settings
in JSON, a ``manifest.json`` with the sha256 of every file. Nothing is ever unpickled
(no pickle, joblib or ``torch.load``); Hugging Face weights are loaded from safetensors only.

The hashes are an integrity check (a truncated, corrupted or swapped file is refused with the
file named), not authenticity: anyone who can edit the manifest can re-hash. Keep artifact
directories where only your deployment can write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verifiers._types import EstimatorError

FORMAT = "cascade-artifact"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


class ArtifactError(EstimatorError):
    """An artifact directory that cannot be loaded safely; the message names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Artifact:
    kind: str
    meta: Mapping[str, object]
    arrays: Mapping[str, np.ndarray]
    directory: Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_artifact(directory: str | Path, kind: str, meta: Mapping[str, object],
                  arrays: Mapping[str, np.ndarray]) -> Path:
    """Write arrays (safetensors) and meta (JSON) into ``directory``; other files already put
    there (e.g. a saved tokenizer) are hashed too."""
    from safetensors.numpy import save_file

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / WEIGHTS))
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    files = {p.relative_to(folder).as_posix(): _sha256(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"format": FORMAT, "version": VERSION, "kind": kind, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return folder


def _read_json(path: Path, what: str) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(path, f"missing {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ArtifactError(path, f"{what} is not a JSON object")
    return value


def verify(directory: str | Path, kinds: frozenset[str]) -> dict[str, object]:
    """Check the manifest and every listed file's hash; return the manifest."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ArtifactError(folder, "not a directory")
    manifest = _read_json(folder / MANIFEST, "manifest")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ArtifactError(folder / MANIFEST, f"not a {FORMAT} version {VERSION} manifest")
    if manifest.get("kind") not in kinds:
        raise ArtifactError(folder / MANIFEST, f"kind {manifest.get('kind')!r} is not one of "
                            f"{', '.join(sorted(kinds))}")
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise ArtifactError(folder / MANIFEST, "lists no weights")
    for name, expected in files.items():
        path = folder / name
        if ".." in Path(name).parts or not path.is_file():
            raise ArtifactError(path, "listed in the manifest but missing")
        if _sha256(path) != expected:
            raise ArtifactError(path, f"tampered or corrupted: {name} does not match its sha256 "
                                "in the manifest")
    return manifest


def load_artifact(directory: str | Path, kinds: frozenset[str]) -> Artifact:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(directory)
    manifest = verify(folder, kinds)
    try:
        arrays = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(folder / WEIGHTS, f"unreadable safetensors ({exc})") from None
    meta = _read_json(folder / "meta.json", "meta.json")
    return Artifact(str(manifest["kind"]), meta, arrays, folder)
