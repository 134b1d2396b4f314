"""Split interactions into training users and held-out users (fold-in + target)."""

from recvae.split.base import HeldOut, Split
from recvae.split.holdout import random_holdout_split
from recvae.split.presplit import presplit, read_lightgcn
from recvae.split.strong import strong_generalization_split

__all__ = [
    "HeldOut",
    "Split",
    "presplit",
    "random_holdout_split",
    "read_lightgcn",
    "strong_generalization_split",
]
