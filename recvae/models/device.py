"""Pick the torch device once: the argument, then RECVAE_DEVICE, then CUDA if present, else CPU."""

from __future__ import annotations

import os

import torch


def resolve_device(requested: str | None = None) -> torch.device:
    name = requested or os.environ.get("RECVAE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested, but CUDA is not available")
    return device
