"""The interface between a model that learns by epochs and the Trainer that drives it.

A model owns its training: its config says how (``TrainingPlan``), its ``TrainingStep`` computes the
losses and holds the optimisers. The Trainer owns only the loop (epochs, shuffled batches, validation
and early stopping, checkpoints, resume, DistributedDataParallel, progress and callbacks) and sees a
model through these two objects and the callables it is handed; it never reads a model's attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import scipy.sparse as sp
import torch

from recvae.models.nn import SparseBatch


@dataclass(frozen=True)
class Phase:
    """One kind of pass over the training users within an epoch.

    ``passes``: how many times in a row; ``reported``: whether its loss terms make the epoch's
    record; ``batched``: False when the model reads the data itself (RecBole's data loader);
    ``every_parameter``: False when its loss leaves some of the module's trainable parameters without a
    gradient (RecVAE's decoder phase, which holds the encoder fixed), which DistributedDataParallel must
    then look for after every backward pass.
    """

    name: str
    passes: int = 1
    reported: bool = True
    batched: bool = True
    every_parameter: bool = True


@dataclass(frozen=True)
class TrainingPlan:
    """What the loop needs to know of a run, from the model's config.

    ``identity``: what a checkpoint must match to be resumed (the model's name and the config, less what
    may change between a run and its resume); ``binarize``: how a torchrun rank's rows are read.
    """

    epochs: int
    batch_size: int
    patience: int | None
    validation_metric: str
    seed: int
    device: torch.device
    precision: str = "fp32"
    binarize: bool = True
    identity: dict = field(default_factory=dict)


class TrainingStep(ABC):
    """A model's side of training: its losses, optimisers, phases and what happens between them.

    A batch's loss is its mean over the batch's users (so that ranks holding parts of one batch can be
    weighted back to it); its terms come back as sums over those users (with ``"users"``), so an epoch's
    averages are exact. The attributes below are read by the Trainer; a step sets those that apply.
    """

    phases: tuple[Phase, ...] = (Phase("train"),)
    module: torch.nn.Module
    # the epochs this step trains, when it fixes them itself (RecBole's closed-form models: 1)
    epochs: int | None = None
    # the size of the code the posterior diagnostics measure; None: no diagnostics
    latent_dim: int | None = None
    # the KL weight's cap, so that the collapse warning can tell an anneal's early epochs from its end
    beta_cap: float | None = None

    def batch_loss(self, phase: str, batch: SparseBatch, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch of a batched phase (its gradient is what ``optimizer_for(phase)`` applies)."""
        raise NotImplementedError(f"{type(self).__name__} has no batched phase {phase!r}")

    def kl_weight(self, updates: int, updates_per_epoch: int) -> float | None:
        """β after ``updates`` optimiser updates, for a step with a KL weight schedule; None otherwise."""
        return None

    def optimizer_for(self, phase: str) -> torch.optim.Optimizer:
        """The optimiser a batched phase updates with (the only one, unless a model says otherwise)."""
        optimizers = list(self.optimizers().values())
        if len(optimizers) != 1:
            raise NotImplementedError(f"{type(self).__name__} has several optimisers: say which one {phase!r} uses")
        return optimizers[0]

    def train_pass(self, phase: str, epoch: int) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} has no unbatched phase {phase!r}")

    def start_epoch(self, epoch: int) -> None:
        """Called before epoch ``epoch`` (from 0) trains (ImplicitSLIM refreshes the item embeddings here)."""

    def end_phase(self, phase: str) -> None:
        """Called after a phase's last pass (RecVAE refreshes its prior here)."""

    def after_update(self, phase: str) -> None:
        """Called after every optimiser update (VASP projects its item-item weight back to a zero diagonal)."""

    def posterior(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mean and log-variance of the code for diagnostics; None for models without one."""
        return None

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name, checkpointed with the module."""

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Further state an exact resume needs (random generators a model keeps itself)."""
        return {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of ``extra_state``."""


# Builds a freshly initialised step on ``device`` for the (checked) training matrix: weights drawn from
# the CPU generator, dropout and noise from the device generator. The model is ready to score afterwards,
# since validation scores it while it trains.
StartTraining = Callable[[sp.csr_matrix, torch.device, torch.Generator, torch.Generator], TrainingStep]
