"""Per-epoch training checkpoints: tensors in safetensors, the rest in JSON, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recvae.errors import ModelFileError
from recvae.models.serialization import ordinary_permissions, write_atomic_json

TENSORS = "checkpoint.safetensors"
STATE = "checkpoint.json"


def save_checkpoint(directory: Path, tensors: dict[str, torch.Tensor], state: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ckpt.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        ordinary_permissions(Path(tmp))
        os.replace(tmp, directory / TENSORS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The JSON goes last: it names the epoch, so a crash between the two files resumes one epoch early.
    write_atomic_json(directory / STATE, state)


def load_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    directory = Path(directory)
    if not (directory / STATE).exists():
        return None
    try:
        state = json.loads((directory / STATE).read_text())
        tensors = load_file(str(directory / TENSORS))
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        raise ModelFileError(f"{directory}: damaged checkpoint ({exc}); delete it or train without --resume") from None
    if tensors.get("epoch_marker") is None or int(tensors["epoch_marker"]) != state.get("epoch"):
        raise ModelFileError(f"{directory}: checkpoint files are from different epochs; delete it or train without --resume")
    return tensors, state


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Split an optimiser's state into tensors and JSON-able parameter groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, state["param_groups"]


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    slots: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            slots.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": slots, "param_groups": groups})
