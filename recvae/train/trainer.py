"""The one training loop: every model that learns by epochs (Mult-VAE, Mult-DAE, RecVAE, RecBole's)
is driven here through its ``TrainingStep`` (see ``recvae.models.base``)."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recvae.errors import ModelFileError
from recvae.models.base import IterativeRecommender, Recommender, TrainingStep
from recvae.models.device import resolve_device
from recvae.models.nn import SparseBatch
from recvae.models.schedules import beta_at
from recvae.train.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from recvae.train.diagnostics import diagnose, diagnostic_sample, warn_if_collapsed
from recvae.train.early_stopping import BestEpoch

log = logging.getLogger(__name__)
# One line per epoch where no progress bar is drawn (logs, nohup, CI); the CLI shows it unless --quiet.
progress_log = logging.getLogger("recvae.progress")

EpochCallback = Callable[[dict], None]
# Scores the model on validation users: {"ndcg@100": ..., ...}; recvae.evaluate.validation_scorer builds one.
Validation = Callable[[Recommender], dict]


@dataclasses.dataclass
class _Progress:
    """Where a run stands; what a checkpoint restores."""

    epoch: int = 0  # epochs done
    updates: int = 0  # optimiser updates done, what β schedules count
    history: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Trainer:
    """Trains an ``IterativeRecommender``: shuffled user batches, the β schedule, validation after every
    epoch with early stopping on the best weights, posterior diagnostics, a checkpoint per epoch and
    exact ``resume``, progress and per-epoch callbacks (MLflow, for one).

    The model's config supplies ``epochs``, ``batch_size``, ``patience``, ``validation_metric``, ``seed``
    and ``device``, and for Mult-VAE ``beta_schedule``, ``beta_cap`` and ``total_anneal_steps``.
    """

    checkpoint_dir: str | Path | None = None
    resume: bool = False
    callbacks: Sequence[EpochCallback] = ()
    progress: bool | None = None  # None: a bar when stderr is a terminal

    def fit(self, model: IterativeRecommender, user_items: sp.csr_matrix, validation: Validation | None = None,
            items=None) -> IterativeRecommender:
        """Train ``model`` in place on ``user_items`` and return it; its ``history_`` lists the epochs."""
        if not isinstance(model, IterativeRecommender):
            raise TypeError(f"{type(model).__name__} does not train by epochs; call its fit")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume needs checkpoint_dir, the folder of the interrupted run")
        train = model._training_matrix(user_items)
        try:
            model.history_ = self._train(model, train, validation, items)
        except BaseException:
            model._fitted = False
            raise
        model.metadata_ = {"history": model.history_}
        return model

    def _train(self, model: IterativeRecommender, train: sp.csr_matrix, validation, items) -> list[dict]:
        config = model.config
        device = resolve_device(config.device)
        generator = torch.Generator().manual_seed(config.seed)
        device_generator = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(config.seed + 1)
        step = model.start_training(train, device, generator, device_generator)
        model._set_fitted(train, items)  # validation scores the model while it trains
        best = BestEpoch(config.patience)
        progress = _Progress()
        key = _checkpoint_key(model, train)
        if self.resume:
            self._restore(step, best, progress, (generator, device_generator), key)
        sample = diagnostic_sample(train, config.seed) if getattr(step, "latent_dim", None) else None
        epochs = getattr(step, "epochs", None) or config.epochs
        warn_if_beta_stays_low(config, epochs, math.ceil(train.shape[0] / getattr(config, "batch_size", 1)))
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        with tqdm(total=epochs, initial=progress.epoch, desc="epochs", unit="epoch", disable=not show, leave=False) as bar:
            while progress.epoch < epochs and not best.exhausted:
                started = time.perf_counter()
                record = self._epoch(model, step, train, device, generator, progress)
                if sample is not None:
                    step.module.eval()
                    record.update(diagnose(step.posterior, sample, device))
                if validation is not None:
                    scores = validation(model)
                    record.update({f"val_{k}": v for k, v in scores.items()})
                    best.update(scores[config.validation_metric], progress.epoch, step.module)
                record["seconds"] = time.perf_counter() - started
                progress.history.append(record)
                log.info("epoch %d: %s", progress.epoch, format_record(record))
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.1f}", **({"val": f"{best.score:.4f}"} if validation else {}))
                if not show and self.progress is None:
                    progress_log.info(_progress_line(record, epochs, best, config.validation_metric))
                if self.checkpoint_dir is not None:
                    self._save(step, best, progress, (generator, device_generator), key)
                for callback in self.callbacks:
                    callback(record)
        if best.restore(step.module):
            log.info("best %s %.4f at epoch %d", config.validation_metric, best.score, best.epoch)
        if sample is not None:
            warn_if_collapsed(progress.history, best.epoch, step.latent_dim, getattr(config, "beta_cap", None))
        step.module.eval()
        return progress.history

    def _epoch(self, model, step: TrainingStep, train, device, generator, progress: _Progress) -> dict:
        """One epoch of every phase; the record of its reported phases' mean loss terms."""
        started = time.perf_counter()
        step.module.train()
        config = model.config
        updates_per_epoch = math.ceil(train.shape[0] / config.batch_size) if hasattr(config, "batch_size") else 1
        totals: dict[str, float] = {}
        beta = None
        for phase in step.phases:
            for _ in range(phase.passes):
                if phase.batched:
                    terms = {}
                    for rows in _shuffled_batches(train.shape[0], config.batch_size, generator):
                        beta = _beta(config, progress.updates, updates_per_epoch)
                        _add(terms, step.train_batch(phase.name, SparseBatch.from_csr(train[rows], device), beta or 0.0))
                        progress.updates += 1
                else:
                    terms = step.train_pass(phase.name, progress.epoch)
                if phase.reported:
                    _add(totals, terms)
            step.end_phase(phase.name)
        step.module.eval()
        progress.epoch += 1
        users = totals.pop("users")
        record = {"epoch": progress.epoch, **{k: v / users for k, v in totals.items()}}
        if beta is not None:
            record["beta"] = beta
        record["train_seconds"] = time.perf_counter() - started
        return record

    # -- checkpoints --------------------------------------------------------------------------
    def _save(self, step: TrainingStep, best: BestEpoch, progress: _Progress, generators, key: dict) -> None:
        tensors = {f"module.{k}": v for k, v in step.module.state_dict().items()}
        if best.state is not None:
            tensors.update({f"best.{k}": v for k, v in best.state.items()})
        groups = {}
        for name, optimizer in step.optimizers().items():
            flat, groups[name] = optimizer_to_flat(optimizer, f"optim.{name}")
            tensors.update(flat)
        tensors.update({f"extra.{k}": v for k, v in step.extra_state().items()})
        tensors["rng.cpu"] = generators[0].get_state()
        if generators[1] is not generators[0]:
            tensors["rng.device"] = generators[1].get_state()
        save_checkpoint(self.checkpoint_dir, tensors, {
            "epoch": progress.epoch, "updates": progress.updates, "history": progress.history,
            "best_score": best.score, "best_epoch": best.epoch, "stale": best.stale, "param_groups": groups, **key,
        })

    def _restore(self, step: TrainingStep, best: BestEpoch, progress: _Progress, generators, key: dict) -> None:
        loaded = load_checkpoint(self.checkpoint_dir)
        if loaded is None:
            log.warning("%s: no checkpoint to resume from; training from the start", self.checkpoint_dir)
            return
        tensors, state = loaded
        for part, what in (("data", "other data"), ("model", "another model or config")):
            if state.get(part) != key[part]:
                raise ModelFileError(f"{self.checkpoint_dir}: checkpoint was trained on {what} "
                                     f"({state.get(part)}, now {key[part]}); train without --resume")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        step.module.load_state_dict(part("module."))
        for name, optimizer in step.optimizers().items():
            optimizer_from_flat(optimizer, tensors, state["param_groups"][name], f"optim.{name}")
        step.load_extra_state(part("extra."))
        generators[0].set_state(tensors["rng.cpu"])
        if generators[1] is not generators[0]:
            generators[1].set_state(tensors["rng.device"])
        device = next(step.module.parameters()).device
        best.state = {k: v.to(device) for k, v in part("best.").items()} or None
        best.score, best.epoch, best.stale = state["best_score"], state["best_epoch"], state["stale"]
        progress.epoch, progress.updates, progress.history = state["epoch"], state["updates"], state["history"]
        log.info("resuming after epoch %d from %s", progress.epoch, self.checkpoint_dir)


def _shuffled_batches(n_users: int, batch_size: int, generator: torch.Generator):
    """Row indices of each batch of one shuffled pass (sorted within a batch: CSR rows slice faster)."""
    order = torch.randperm(n_users, generator=generator).numpy()
    for start in range(0, n_users, batch_size):
        yield np.sort(order[start : start + batch_size])


def _beta(config, updates: int, updates_per_epoch: int) -> float | None:
    """The KL weight after ``updates`` updates, for configs with a β schedule; None otherwise."""
    if not hasattr(config, "beta_schedule"):
        return None
    return beta_at(config.beta_schedule, updates, config.beta_cap, anneal_steps(config, updates_per_epoch))


def anneal_steps(config, updates_per_epoch: int) -> int:
    """The schedule's ``total_anneal_steps``, or the one ``anneal_epochs`` implies (linear: β reaches the cap,
    not 1, after that many epochs)."""
    if getattr(config, "anneal_epochs", None) is None:
        return config.total_anneal_steps
    steps = config.anneal_epochs * updates_per_epoch
    return max(1, round(steps / config.beta_cap if config.beta_schedule == "linear" and config.beta_cap > 0 else steps))


def warn_if_beta_stays_low(config, epochs: int, updates_per_epoch: int) -> bool:
    """Before training: say so when the β schedule cannot reach its cap within the epochs (the paper's
    200,000 anneal steps on a log of a few thousand users), how far it gets and what would reach it."""
    if getattr(config, "beta_schedule", None) not in ("linear", "sigmoid") or config.beta_cap <= 0:
        return False
    updates = epochs * updates_per_epoch
    total = anneal_steps(config, updates_per_epoch)
    final = beta_at(config.beta_schedule, updates, config.beta_cap, total)
    if final >= 0.99 * config.beta_cap:
        return False
    needed = math.ceil(updates / config.beta_cap) if config.beta_schedule == "linear" else updates
    log.warning(
        "β will reach only %.3g of its cap %.3g: %d epochs are %d updates, and the %s schedule over "
        "total_anneal_steps=%d needs more%s. total_anneal_steps=%d (--total-anneal-steps) reaches the cap at the "
        "last epoch; anneal_epochs (--anneal-epochs) gives the anneal's length in epochs instead",
        final, config.beta_cap, epochs, updates, config.beta_schedule, total,
        " (the model trains in effect as a denoising autoencoder)" if final < 0.1 * config.beta_cap else "", needed,
    )
    return True


def _add(totals: dict, terms: dict) -> None:
    for name, value in terms.items():
        totals[name] = totals.get(name, 0.0) + value


def _checkpoint_key(model: IterativeRecommender, train: sp.csr_matrix) -> dict:
    """What a checkpoint must match to be resumed: the data's shape and the config (less what may change)."""
    config = {k: v for k, v in dataclasses.asdict(model.config).items() if k not in ("epochs", "device", "patience")}
    return {"data": {"n_users": int(train.shape[0]), "n_items": int(train.shape[1]), "nnz": int(train.nnz)},
            "model": {"name": model.name, "config": _json_ready(config)}}


def _progress_line(record: dict, epochs: int, best: BestEpoch, metric: str) -> str:
    line = f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4g}"
    if f"val_{metric}" in record:
        line += f", validation {metric} {record[f'val_{metric}']:.4f} (best {best.score:.4f} at epoch {best.epoch})"
    return line + f", {record['seconds']:.1f} s"


def format_record(record: dict) -> str:
    """An epoch record's scalars for the log (the per-dimension KL list stays in the history)."""
    return ", ".join(f"{k}={v:.4g}" for k, v in record.items()
                     if k != "epoch" and isinstance(v, (int, float)))


def _json_ready(value):
    """Tuples to lists, so a config compares equal to its JSON round trip."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
