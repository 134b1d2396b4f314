"""Per-epoch training checkpoints: one safetensors file holding every tensor, with the rest of the
state as JSON in its header, so a checkpoint is replaced in a single rename: a crash at any instant
leaves the previous epoch's checkpoint or the new one, never a mixture."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from recvae.errors import ModelFileError
from recvae.io import remove_stale_temporaries, replace_durably, temporary_beside, writing

CHECKPOINT = "checkpoint.safetensors"
STATE_KEY = "recvae_state"


def save_checkpoint(directory: str | Path, tensors: dict[str, torch.Tensor], state: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT
    tmp = temporary_beside(target)
    try:  # on a full disk the previous epoch's checkpoint stays, and the run resumes from it
        with writing(target, "the checkpoint", (SafetensorError,)):
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={STATE_KEY: json.dumps(state)})
            replace_durably(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(tensors, state) of the checkpoint in ``directory``, or None when there is none; temporary files
    an interrupted write left there are removed."""
    target = Path(directory) / CHECKPOINT
    remove_stale_temporaries(target)
    if not target.exists():
        return None
    try:
        with safe_open(str(target), framework="pt") as handle:
            state = json.loads(handle.metadata()[STATE_KEY])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (json.JSONDecodeError, SafetensorError, OSError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{target}: damaged checkpoint ({exc}); delete it or train without {{resume=True}}") from None
    return tensors, state


def optimizer_to_flat(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    """Split an optimiser's state into named tensors and JSON-able parameter groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"{prefix}.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, state["param_groups"]


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list,
                        prefix: str) -> None:
    slots: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            index, key = name[len(prefix) + 1:].split(".", 1)
            slots.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": slots, "param_groups": groups})
