"""Config dataclasses: what every iteratively trained model shares, and rebuilding any config from JSON or TOML."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from recvae.defaults import SEED
from recvae.errors import ParameterError, at_least, one_of, positive
from recvae.score.metrics import parse_metric


@dataclass(frozen=True, kw_only=True)
class EpochConfig:
    """What every model the Trainer runs has: up to ``epochs`` epochs, stopped after ``patience`` epochs
    without a better validation ``validation_metric`` (None: every epoch), the ``seed`` of its random
    streams and its ``device`` (None: ``recvae.models.device.resolve_device``'s choice)."""

    epochs: int = 200
    patience: int | None = 20
    validation_metric: str = "ndcg@100"
    seed: int = SEED
    device: str | None = None

    def __post_init__(self):
        at_least(1, epochs=self.epochs)
        if self.patience is not None and self.patience < 1:
            raise ParameterError("patience", self.patience, "must be at least 1, or none to train every epoch")
        parse_metric(self.validation_metric)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(EpochConfig):
    """How recvae's own models train: epochs, batches, optimiser, early stopping, seed, device, precision.

    Defaults are the Mult-VAE paper's: Adam with learning rate 1e-3, batches of 500
    users, up to 200 epochs keeping the weights of the best validation NDCG@100.
    """

    batch_size: int = 500
    learning_rate: float = 1e-3
    precision: str = "fp32"

    def __post_init__(self):
        super().__post_init__()
        at_least(1, batch_size=self.batch_size)
        positive(learning_rate=self.learning_rate)
        one_of(PRECISIONS, precision=self.precision)


LIKELIHOODS = ("multinomial", "gaussian", "logistic", "focal")
# fp32, or autocast's mixed precision: matrix products in bfloat16 or float16 (with a gradient scaler)
PRECISIONS = ("fp32", "bf16", "fp16")
NEGATIVE_PROPOSALS = ("popularity", "uniform")


@dataclass(frozen=True, kw_only=True)
class FocalConfig:
    """The focal loss of Lin et al. (2017), as VASP (Vančura & Kordík 2021) uses it on item sigmoids: every
    item's binary cross-entropy times (1 - p_t)^``focal_gamma``, positives weighted by ``focal_alpha`` and
    negatives by 1 - ``focal_alpha`` (None: no weighting, so ``focal_gamma=0`` is binary cross-entropy)."""

    focal_gamma: float = 2.0
    focal_alpha: float | None = 0.25

    def _check_focal(self) -> None:
        at_least(0, focal_gamma=self.focal_gamma)
        if self.focal_alpha is not None and not 0.0 < self.focal_alpha < 1.0:
            raise ParameterError("focal_alpha", self.focal_alpha, "must lie in (0, 1), or be none for no class weighting")


@dataclass(frozen=True, kw_only=True)
class LikelihoodConfig(FocalConfig):
    """What the autoencoders' decoder output is scored by. ``negatives`` S > 0 replaces the multinomial's
    normalisation over every item by a sampled softmax: each batch's users' own items plus S negatives
    shared by the batch, drawn from ``negative_proposal`` (training popularity + 1, or uniform) with the
    logQ correction, so an update's decoder products cost (batch items + S) columns instead of the
    catalogue. Validation, scoring and export stay exact. ``likelihood="focal"`` scores each item's sigmoid
    by the focal loss (``FocalConfig``)."""

    likelihood: str = "multinomial"
    negatives: int = 0
    negative_proposal: str = "popularity"

    def _check_likelihood(self) -> None:
        one_of(LIKELIHOODS, likelihood=self.likelihood)
        at_least(0, negatives=self.negatives)
        if self.negatives and self.likelihood != "multinomial":
            raise ParameterError("negatives", self.negatives,
                                 f"the sampled softmax needs {{likelihood}} multinomial, not {self.likelihood!r}")
        one_of(NEGATIVE_PROPOSALS, negative_proposal=self.negative_proposal)
        self._check_focal()


def config_from_dict(config_class: type, values: dict):
    """Rebuild a config dataclass from JSON: lists become tuples where the field is a tuple."""
    hints = typing.get_type_hints(config_class)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} field(s): {sorted(unknown)}; known: {sorted(known)}")
    fixed = {}
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        fixed[name] = value
    return config_class(**fixed)
