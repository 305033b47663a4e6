"""Safe artifact directories for trained verifiers and routers: arrays in safetensors, settings
in JSON, a ``manifest.json`` with the sha256 of every file. Nothing is ever unpickled
(no pickle, joblib or ``torch.load``); Hugging Face weights are loaded from safetensors only.

What loading checks, before any file is parsed: the manifest is at most 1 MiB of JSON (its
nesting bounded), lists at most ``MAX_FILES`` files by relative paths (no absolute path, no
``..``, no backslash), including ``weights.safetensors`` and ``meta.json``; every file in the
directory (subdirectories included) is listed, none is a symlink, and each matches its
sha256. An unlisted, missing, swapped, truncated or corrupted file is refused with its name.

Integrity, not authenticity: anyone who can write the directory can re-hash it and write a
consistent manifest. For authenticity, pin the manifest's own digest where the artifact is
used: a policy's ``sha256:`` beside ``artifact:`` (``sha256sum <dir>/manifest.json``, or
``manifest_digest``); a directory whose manifest differs is refused. The pin then covers every
file, since the manifest covers their hashes. Files are hashed, then read again to load: keep
artifact directories where only your deployment can write (docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verifiers._types import EstimatorError

FORMAT = "cascade-artifact"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
META = "meta.json"
MAX_FILES = 10_000
MAX_MANIFEST_BYTES = 1 << 20
MAX_META_BYTES = 16 << 20
_HEX = re.compile(r"^[0-9a-f]{64}$")


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
    (folder / META).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    top = folder / MANIFEST
    files = {p.relative_to(folder).as_posix(): _sha256(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p != top}
    manifest = {"format": FORMAT, "version": VERSION, "kind": kind, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return folder


def manifest_digest(directory: str | Path) -> str:
    """The sha256 of an artifact's ``manifest.json``: what a policy pins with ``sha256:``."""
    return _sha256(Path(directory) / MANIFEST)


def _read_json(path: Path, what: str, limit: int) -> tuple[dict[str, object], bytes]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise ArtifactError(path, f"missing {what}") from None
    except OSError as exc:
        raise ArtifactError(path, f"unreadable {what} ({exc.strerror})") from None
    if len(raw) > limit:
        raise ArtifactError(path, f"{what} is larger than {limit} bytes")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"{what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ArtifactError(path, f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise ArtifactError(path, f"{what} is not a JSON object")
    return value, raw


def _listed(folder: Path, files: object) -> dict[str, str]:
    """The manifest's ``files``, checked: relative paths inside the folder, sha256 values."""
    if not isinstance(files, dict):
        raise ArtifactError(folder / MANIFEST, "`files` is not a mapping of path to sha256")
    if len(files) > MAX_FILES:
        raise ArtifactError(folder / MANIFEST, f"lists more than {MAX_FILES} files")
    for name, digest in files.items():
        parts = name.split("/")
        if (not name or name.startswith("/") or "\\" in name or "\0" in name
                or any(p in ("", ".", "..") for p in parts)):
            raise ArtifactError(folder / MANIFEST, f"lists {name!r}: only relative paths inside "
                                "the artifact directory are allowed (no absolute path, no ..)")
        if not isinstance(digest, str) or not _HEX.match(digest):
            raise ArtifactError(folder / MANIFEST, f"the sha256 of {name!r} is not 64 hex digits")
    for required in (WEIGHTS, META):
        if required not in files:
            raise ArtifactError(folder / MANIFEST, f"does not list {required}: every file the "
                                "loader reads must be in the manifest")
    return files


def _present(folder: Path) -> set[str]:
    """Every file under ``folder`` but its manifest; a symlink is refused."""
    out: set[str] = set()
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise ArtifactError(path, "a symlink in an artifact directory is not allowed")
        if path.is_file() and path != folder / MANIFEST:
            out.add(path.relative_to(folder).as_posix())
        if len(out) > MAX_FILES:
            raise ArtifactError(folder, f"holds more than {MAX_FILES} files")
    return out


def verify(directory: str | Path, kinds: frozenset[str], *,
           sha256: str | None = None) -> dict[str, object]:
    """Check the manifest (and its pinned digest, if given), that it lists exactly the files
    present, and every file's hash; return the manifest."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ArtifactError(folder, "not a directory")
    manifest, raw = _read_json(folder / MANIFEST, "manifest", MAX_MANIFEST_BYTES)
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256.lower():
        raise ArtifactError(folder / MANIFEST, f"sha256 {hashlib.sha256(raw).hexdigest()} is not "
                            f"the pinned {sha256.lower()}: the artifact changed since it was pinned")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ArtifactError(folder / MANIFEST, f"not a {FORMAT} version {VERSION} manifest")
    if not isinstance(manifest.get("kind"), str) or manifest["kind"] not in kinds:
        raise ArtifactError(folder / MANIFEST, f"kind {manifest.get('kind')!r} is not one of "
                            f"{', '.join(sorted(kinds))}")
    files = _listed(folder, manifest.get("files"))
    present = _present(folder)
    unlisted = sorted(present - set(files))
    if unlisted:
        raise ArtifactError(folder / unlisted[0], f"not listed in the manifest ({len(unlisted)} "
                            "unlisted file(s)); an artifact holds exactly its listed files")
    for name, expected in files.items():
        path = folder / name
        if name not in present:
            raise ArtifactError(path, "listed in the manifest but missing")
        if _sha256(path) != expected:
            raise ArtifactError(path, f"tampered or corrupted: {name} does not match its sha256 "
                                "in the manifest")
    return manifest


def load_artifact(directory: str | Path, kinds: frozenset[str], *,
                  sha256: str | None = None) -> Artifact:
    """Verify (``verify``), then load the weights and ``meta.json``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(directory)
    manifest = verify(folder, kinds, sha256=sha256)
    try:
        arrays = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(folder / WEIGHTS, f"unreadable safetensors ({exc})") from None
    meta, _ = _read_json(folder / META, META, MAX_META_BYTES)
    return Artifact(str(manifest["kind"]), meta, arrays, folder)
