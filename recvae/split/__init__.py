"""Split interactions into training users and held-out users (fold-in + target)."""

from recvae.split.base import HeldOut, Split
from recvae.split.holdout import random_holdout_split
from recvae.split.presplit import presplit
from recvae.split.strong import strong_generalization_split, validation_from_training

__all__ = [
    "HeldOut",
    "Split",
    "presplit",
    "random_holdout_split",
    "strong_generalization_split",
    "validation_from_training",
]
