"""Model directories: weights in safetensors, everything else in JSON; nothing is ever unpickled.

A directory holds ``model.json`` (model kind, config, library version, the
SHA-256 of the weights file, free-form metadata such as the training history),
``weights.safetensors`` and, when the model knows its item IDs, ``items.json``.
It is written to a temporary folder beside the target and renamed into place, so
an interrupted save never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recvae.data.vocab import Vocabulary
from recvae.defaults import VERSION
from recvae.errors import DataError, ModelFileError
from recvae.io import fsync_path, ordinary_permissions, sha256_file, temporary_beside

FORMAT_VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
ITEMS_FILE = "items.json"


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
        (tmp / MODEL_FILE).write_text(json.dumps(manifest, indent=2, default=str))
        for file in tmp.iterdir():
            ordinary_permissions(file)
            fsync_path(file)
        fsync_path(tmp)
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise ModelFileError(
            f"{manifest_path}: model format {manifest.get('format') if isinstance(manifest, dict) else None!r} "
            f"is not the supported format {FORMAT_VERSION}"
        )
    for key in ("model", "config", "files"):
        if key not in manifest:
            raise ModelFileError(f"{manifest_path}: lacks the field {key!r}")
    for name, expected in manifest["files"].items():
        file = path / name
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
