"""The one place a torch device is chosen (``resolve_device``), and the precision the forward pass runs in."""

from __future__ import annotations

import os

import torch


def autocast(device: torch.device, precision: str = "fp32"):
    """The forward pass's precision: autocast to bfloat16 / float16 matrix products ("bf16", "fp16"), or
    nothing ("fp32"). Losses and scores leave it as float32 (``full_precision``)."""
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def full_precision(tensor: torch.Tensor):
    """Inside an autocast region, a block computed in float32 (losses, KL terms, log-densities)."""
    return torch.autocast(tensor.device.type, enabled=False)


def resolve_device(requested: str | None = None, *, prefer_cuda: bool = True) -> torch.device:
    """The device asked for, else RECVAE_DEVICE, else CUDA when present and ``prefer_cuda`` (fitting), else the
    CPU (loading a saved model: it stays where the user puts it rather than moving to a GPU unasked).
    A device that is not there is refused, naming it."""
    name = requested or os.environ.get("RECVAE_DEVICE") or ("cuda" if prefer_cuda and torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested, but CUDA is not available")
    return device
