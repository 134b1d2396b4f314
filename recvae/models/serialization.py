"""Model directories: weights in safetensors, everything else in JSON; nothing is ever unpickled.

A directory holds ``model.json`` (model kind, config, library version, the
SHA-256 of the weights file, free-form metadata such as the training history),
``weights.safetensors`` and, when the model knows its item IDs, ``items.json``.
It is written to a temporary folder beside the target and renamed into place, so
an interrupted save never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recvae.data.vocab import Vocabulary
from recvae.defaults import VERSION
from recvae.errors import DataError, ModelFileError
from recvae.io import fsync_path, ordinary_permissions, sha256_file, temporary_beside, writing

# 2: model.json carries its own checksum (INTEGRITY_KEY), which must be there; 1: written before it was
# required, read with a warning when it lacks one
FORMAT_VERSION = 2
FORMATS = (1, 2)
MODEL_FILE = "model.json"
INTEGRITY_KEY = "manifest_sha256"  # of model.json's own content, without this field: an edited config is refused
WEIGHTS_FILE = "weights.safetensors"
ITEMS_FILE = "items.json"

log = logging.getLogger(__name__)


def save_model_dir(
    path: str | Path,
    kind: str,
    config: dict,
    tensors: dict[str, torch.Tensor],
    items: Vocabulary | None,
    metadata: dict | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path, directory=True)
    try:
        with writing(path, "the model directory", (SafetensorError,)):
            _write_model_files(tmp, kind, config, tensors, items, metadata)
            _move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_model_files(tmp: Path, kind: str, config: dict, tensors: dict[str, torch.Tensor], items: Vocabulary | None,
                       metadata: dict | None) -> None:
    weights = tmp / WEIGHTS_FILE
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(weights))
    files = {WEIGHTS_FILE: sha256_file(weights)}
    if items is not None:
        (tmp / ITEMS_FILE).write_text(json.dumps(items.to_json()))
        files[ITEMS_FILE] = sha256_file(tmp / ITEMS_FILE)
    manifest = {
        "format": FORMAT_VERSION,
        "recvae_version": VERSION,
        "model": kind,
        "config": config,
        "files": files,
        "metadata": metadata or {},
    }
    manifest = json.loads(json.dumps(manifest, default=str))  # what will be read back
    manifest[INTEGRITY_KEY] = manifest_digest(manifest)
    (tmp / MODEL_FILE).write_text(json.dumps(manifest, indent=2))
    for file in tmp.iterdir():
        ordinary_permissions(file)
        fsync_path(file)
    fsync_path(tmp)


def _move_into_place(tmp: Path, path: Path) -> None:
    if path.exists():
        if not (path / MODEL_FILE).exists() and any(path.iterdir()):
            raise ModelFileError(f"{path}: exists and is not a recvae model directory; refusing to replace it")
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's content (key order and layout do not count) without its own digest."""
    content = {k: v for k, v in manifest.items() if k != INTEGRITY_KEY}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_file_name(path: Path, name) -> Path:
    """A manifest's file entry must name a plain file inside the directory: no path, no link."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
        raise ModelFileError(f"{path / MODEL_FILE}: file entry {name!r} is not a file name inside the model directory")
    file = path / name
    if file.is_symlink():
        raise ModelFileError(f"{file}: is a symbolic link; a model directory holds its own files")
    return file


def read_model_dir(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], Vocabulary | None]:
    """Return (manifest, tensors, item vocabulary); refuse anything altered or incomplete."""
    path = Path(path)
    manifest_path = path / MODEL_FILE
    if not manifest_path.is_file():
        raise ModelFileError(f"{path}: not a recvae model directory (no {MODEL_FILE})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise ModelFileError(
            f"{manifest_path}: model format {manifest.get('format') if isinstance(manifest, dict) else None!r} "
            f"is not one of the supported formats {FORMATS}"
        )
    for key in ("model", "config", "files"):
        if key not in manifest:
            raise ModelFileError(f"{manifest_path}: lacks the field {key!r}")
    if INTEGRITY_KEY in manifest and manifest[INTEGRITY_KEY] != manifest_digest(manifest):
        raise ModelFileError(f"{manifest_path}: contents differ from what was saved (edited); refusing to load")
    if INTEGRITY_KEY not in manifest and manifest["format"] >= 2:
        raise ModelFileError(f"{manifest_path}: lacks its checksum ({INTEGRITY_KEY!r}), which every model of format "
                             f"{manifest['format']} carries: the file was edited; refusing to load")
    if INTEGRITY_KEY not in manifest:  # written before recvae checked model.json itself
        log.warning("%s: saved by an older recvae, without a checksum of its own; its config is trusted as it is",
                    manifest_path)
    if not isinstance(manifest["files"], dict) or WEIGHTS_FILE not in manifest["files"]:
        raise ModelFileError(f"{manifest_path}: 'files' must list {WEIGHTS_FILE} with its checksum")
    for name, expected in manifest["files"].items():
        file = _check_file_name(path, name)
        if not file.is_file():
            raise ModelFileError(f"{path}: {name} is missing")
        if sha256_file(file) != expected:
            raise ModelFileError(f"{file}: contents differ from what was saved (truncated or edited); refusing to load")
    try:
        # Fresh, aligned copies: kernels may pick other code paths for oddly aligned buffers,
        # and scores after loading must equal scores before saving.
        tensors = {k: v.clone() for k, v in load_file(str(path / WEIGHTS_FILE)).items()}
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"{path / WEIGHTS_FILE}: unreadable ({exc})") from None
    items = None
    if ITEMS_FILE in manifest["files"]:
        try:
            items = Vocabulary.from_json(json.loads((path / ITEMS_FILE).read_text()))
        except (json.JSONDecodeError, DataError) as exc:
            raise ModelFileError(f"{path / ITEMS_FILE}: unreadable ({exc})") from None
    return manifest, tensors, items
