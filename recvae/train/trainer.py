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

from recvae.data.shard import UserRows, gathered_rows
from recvae.errors import DataError, ModelFileError
from recvae.models.base import IterativeRecommender, Recommender, TrainingStep, as_csr
from recvae.models.device import autocast, resolve_device
from recvae.models.nn import SparseBatch
from recvae.models.schedules import beta_at
from recvae.train.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from recvae.train.diagnostics import diagnose, diagnostic_sample, warn_if_collapsed
from recvae.train.distributed import World, join_world, local_device, local_rows
from recvae.train.early_stopping import BestEpoch

log = logging.getLogger(__name__)
# One line per epoch where no progress bar is drawn (logs, nohup, CI); the CLI shows it unless --quiet.
progress_log = logging.getLogger("recvae.progress")

EpochCallback = Callable[[dict], None]
# Scores the model on validation users: {"ndcg@100": ..., ...}; recvae.evaluate.validation_scorer builds one.
Validation = Callable[[Recommender], dict]


@dataclasses.dataclass
class _Generators:
    """The random streams of a run: ``cpu`` and ``device`` draw noise (the same object on a CPU run);
    ``shuffle`` orders the users (``cpu`` itself in one process, a stream every rank shares under torchrun)."""

    cpu: torch.Generator
    device: torch.Generator
    shuffle: torch.Generator

    def states(self) -> dict[str, torch.Tensor]:
        out = {"cpu": self.cpu.get_state()}
        if self.device is not self.cpu:
            out["device"] = self.device.get_state()
        if self.shuffle is not self.cpu:
            out["shuffle"] = self.shuffle.get_state()
        return out

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self.cpu.set_state(states["cpu"])
        if self.device is not self.cpu and "device" in states:
            self.device.set_state(states["device"])
        if self.shuffle is not self.cpu:
            self.shuffle.set_state(states.get("shuffle", states["cpu"]))


@dataclasses.dataclass
class _Progress:
    """Where a run stands; what a checkpoint restores."""

    epoch: int = 0  # epochs done
    updates: int = 0  # optimiser updates done, what β schedules count
    history: list = dataclasses.field(default_factory=list)


class _BatchLoss(torch.nn.Module):
    """A step's batch loss as a module's forward, so that DistributedDataParallel sees the step's
    parameters used (its reducer all-reduces their gradients during the backward pass)."""

    def __init__(self, step: TrainingStep):
        super().__init__()
        self.module = step.module
        self.step = step

    def forward(self, phase: str, batch: SparseBatch, beta: float):
        return self.step.batch_loss(phase, batch, beta)


@dataclasses.dataclass
class Trainer:
    """Trains an ``IterativeRecommender``: shuffled user batches, the β schedule, validation after every
    epoch with early stopping on the best weights, posterior diagnostics, a checkpoint per epoch and
    exact ``resume``, progress and per-epoch callbacks (MLflow, for one).

    Started by ``torchrun`` (WORLD_SIZE > 1) it trains data-parallel: every rank shuffles the users with
    the same generator, so all see the same global batches of ``batch_size`` users; each takes the users
    it holds (every ``WORLD_SIZE``-th) and weights its batch mean by its share of the batch, and
    DistributedDataParallel all-reduces the gradients, so an update is the single-process update of the
    whole batch. Rank 0 alone validates (the scores are broadcast, so every rank stops at the same epoch),
    writes checkpoints (with every rank's generators) and runs the callbacks.

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
        # a torchrun process may hold only its own users' rows of the training matrix (recvae.data.shard)
        train = user_items if isinstance(user_items, UserRows) else model._training_matrix(user_items)
        try:
            model.history_ = self._train(model, train, validation, items)
        except BaseException:
            model._fitted = False
            raise
        model.metadata_ = {"history": model.history_}
        return model

    def _train(self, model: IterativeRecommender, train: sp.csr_matrix, validation, items) -> list[dict]:
        config = model.config
        device = local_device(resolve_device(config.device))
        world = join_world(device)
        if isinstance(train, UserRows):  # the rows as the model takes them, the statistics summed over ranks
            train = gathered_rows(as_csr(train.matrix, binarize=config.binarize), train.rows, train.n_users, world.gather)
            if train.nnz == 0:
                raise DataError("user_items has no interactions to learn from")
        # Noise (dropout, sampling) is each rank's own; the shuffle is shared, so the global batches agree.
        seed = config.seed + 7919 * world.rank
        generator = torch.Generator().manual_seed(seed)
        device_generator = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed + 1)
        step = model.start_training(train, device, generator, device_generator)
        shuffle = generator
        if world.size > 1:  # rank 0's stream as it stands after the initialisation, as one process would go on
            shuffle = torch.Generator()
            shuffle.set_state(world.from_main(generator.get_state()))
        generators = _Generators(generator, device_generator, shuffle)
        precision = _Precision.of(getattr(config, "precision", "fp32"), device)  # RecBole's models: fp32
        model._set_fitted(train, items)  # validation scores the model while it trains
        forward = step.batch_loss
        if world.size > 1:
            if not all(phase.batched for phase in step.phases):
                raise ValueError(f"{model.name} reads its own data (an unbatched phase) and cannot train under torchrun")
            forward = torch.nn.parallel.DistributedDataParallel(
                _BatchLoss(step), device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        best = BestEpoch(config.patience)
        progress = _Progress()
        key = _checkpoint_key(model, train)
        if self.resume:
            self._restore(step, best, progress, generators, key, world, precision)
        held, held_rows = world.held_rows(train)
        # diagnostics look at a sample of the users rank 0 holds (all of them in one process)
        sample = diagnostic_sample(held, config.seed) if getattr(step, "latent_dim", None) else None
        epochs = getattr(step, "epochs", None) or config.epochs
        warn_if_beta_stays_low(config, epochs, math.ceil(train.shape[0] / getattr(config, "batch_size", 1)))
        show = world.main and (self.progress if self.progress is not None else sys.stderr.isatty())
        with tqdm(total=epochs, initial=progress.epoch, desc="epochs", unit="epoch", disable=not show, leave=False) as bar:
            while progress.epoch < epochs and not best.exhausted:
                started = time.perf_counter()
                record = self._epoch(model, step, forward, held, held_rows, train.shape[0], device, shuffle, progress,
                                     world, precision)
                if sample is not None:
                    step.module.eval()
                    record.update(diagnose(step.posterior, sample, device))
                if validation is not None:
                    scores = world.from_main(validation(model) if world.main else None)
                    record.update({f"val_{k}": v for k, v in scores.items()})
                    best.update(scores[config.validation_metric], progress.epoch, step.module)
                record["seconds"] = time.perf_counter() - started
                progress.history.append(record)
                log.info("epoch %d: %s", progress.epoch, format_record(record))
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.1f}", **({"val": f"{best.score:.4f}"} if validation else {}))
                if world.main and not show and self.progress is None:
                    progress_log.info(_progress_line(record, epochs, best, config.validation_metric))
                if self.checkpoint_dir is not None:
                    self._save(step, best, progress, generators, key, world, precision)
                for callback in self.callbacks if world.main else ():
                    callback(record)
        if best.restore(step.module):
            log.info("best %s %.4f at epoch %d", config.validation_metric, best.score, best.epoch)
        if sample is not None:
            warn_if_collapsed(progress.history, best.epoch, step.latent_dim, getattr(config, "beta_cap", None))
        step.module.eval()
        return progress.history

    def _epoch(self, model, step: TrainingStep, forward, held, held_rows, n_users: int, device, shuffle,
               progress: _Progress, world: World, precision: _Precision) -> dict:
        """One epoch of every phase; the record of its reported phases' mean loss terms (over all ranks)."""
        started = time.perf_counter()
        step.module.train()
        config = model.config
        updates_per_epoch = math.ceil(n_users / config.batch_size) if hasattr(config, "batch_size") else 1
        totals: dict[str, float] = {}
        beta = None
        for phase in step.phases:
            for _ in range(phase.passes):
                if phase.batched:
                    terms = {}
                    for rows in _shuffled_batches(n_users, config.batch_size, shuffle):
                        beta = _beta(config, progress.updates, updates_per_epoch)
                        mine = rows if held_rows is None else local_rows(rows, held_rows)
                        # every rank takes part in every update (DDP's all-reduce): one without users of this
                        # batch scores one of its users at weight 0
                        batch = SparseBatch.from_csr(held[mine if mine.size else [0]], device)
                        weight = world.size * mine.size / rows.size
                        batch_terms = _update(step, forward, phase.name, batch, beta or 0.0, weight, precision)
                        if mine.size:
                            _add(terms, batch_terms)
                        progress.updates += 1
                else:
                    terms = step.train_pass(phase.name, progress.epoch)
                if phase.reported:
                    _add(totals, terms)
            step.end_phase(phase.name)
        step.module.eval()
        progress.epoch += 1
        totals = world.total(totals)
        users = totals.pop("users")
        record = {"epoch": progress.epoch, **{k: v / users for k, v in totals.items()}}
        if beta is not None:
            record["beta"] = beta
        record["train_seconds"] = time.perf_counter() - started
        return record

    # -- checkpoints --------------------------------------------------------------------------
    def _save(self, step: TrainingStep, best: BestEpoch, progress: _Progress, generators: _Generators, key: dict,
              world: World, precision: _Precision) -> None:
        """Rank 0 writes the checkpoint, with every rank's generators; the others wait until it is on disk."""
        states = world.gather(generators.states())
        if world.main:
            self._write(step, best, progress, states, key, precision)
        world.barrier()

    def _write(self, step: TrainingStep, best: BestEpoch, progress: _Progress, states: list[dict], key: dict,
               precision: _Precision) -> None:
        tensors = {f"module.{k}": v for k, v in step.module.state_dict().items()}
        if best.state is not None:
            tensors.update({f"best.{k}": v for k, v in best.state.items()})
        groups = {}
        for name, optimizer in step.optimizers().items():
            flat, groups[name] = optimizer_to_flat(optimizer, f"optim.{name}")
            tensors.update(flat)
        tensors.update({f"extra.{k}": v for k, v in step.extra_state().items()})
        for rank, rank_states in enumerate(states):  # rank 0's as rng.cpu / rng.device, as a single process writes them
            tensors.update({f"rng.{name}" if rank == 0 else f"rng.rank{rank}.{name}": state
                            for name, state in rank_states.items()})
        save_checkpoint(self.checkpoint_dir, tensors, {
            "epoch": progress.epoch, "updates": progress.updates, "history": progress.history,
            "best_score": best.score, "best_epoch": best.epoch, "stale": best.stale, "param_groups": groups,
            "world_size": len(states), **key,
            **({"grad_scaler": precision.scaler.state_dict()} if precision.scaler is not None else {}),
        })

    def _restore(self, step: TrainingStep, best: BestEpoch, progress: _Progress, generators: _Generators, key: dict,
                 world: World, precision: _Precision) -> None:
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
        if precision.scaler is not None and "grad_scaler" in state:
            precision.scaler.load_state_dict(state["grad_scaler"])
        saved_world = state.get("world_size", 1)
        if world.size > 1 and saved_world != world.size:
            raise ModelFileError(f"{self.checkpoint_dir}: checkpoint of a run of {saved_world} process(es); resume it with "
                                 f"as many (torchrun --nproc-per-node {saved_world}) or in one process")
        # one process resuming a distributed run continues with rank 0's noise stream, which then also shuffles
        generators.set_states(part("rng.") if world.rank == 0 else part(f"rng.rank{world.rank}."))
        device = next(step.module.parameters()).device
        best.state = {k: v.to(device) for k, v in part("best.").items()} or None
        best.score, best.epoch, best.stale = state["best_score"], state["best_epoch"], state["stale"]
        progress.epoch, progress.updates, progress.history = state["epoch"], state["updates"], state["history"]
        log.info("resuming after epoch %d from %s", progress.epoch, self.checkpoint_dir)


@dataclasses.dataclass
class _Precision:
    """The forward pass under autocast (``config.precision``), and fp16's gradient scaler: float16
    gradients underflow without one; bfloat16 has float32's range and needs none."""

    precision: str
    device: torch.device
    scaler: torch.amp.GradScaler | None

    @classmethod
    def of(cls, precision: str, device: torch.device) -> _Precision:
        return cls(precision, device, torch.amp.GradScaler(device.type) if precision == "fp16" else None)

    def autocast(self):
        return autocast(self.device, self.precision)


def _update(step: TrainingStep, forward, phase: str, batch: SparseBatch, beta: float, weight: float,
            precision: _Precision) -> dict[str, float]:
    """One optimiser update on a batch's loss times ``weight`` (1 in one process; under torchrun the rank's
    share of the global batch times the world size, which DDP's gradient average divides back out)."""
    with precision.autocast():
        loss, terms = forward(phase, batch, beta)
    step.module.zero_grad(set_to_none=True)
    loss = loss if weight == 1.0 else loss * weight
    optimizer = step.optimizer_for(phase)
    if precision.scaler is None:
        loss.backward()
        optimizer.step()
    else:  # a step whose scaled gradients overflowed is skipped and the scale lowered
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
    step.after_update(phase)
    return terms


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
