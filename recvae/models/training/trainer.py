"""The one training loop: every model that learns by epochs (Mult-VAE, Mult-DAE, RecVAE, VASP, RecBole's)
is driven here through its ``TrainingStep`` and ``TrainingPlan`` (``recvae.models.training.step``)."""

from __future__ import annotations

import dataclasses
import inspect
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
from recvae.errors import (DataError, ModelFileError, ParameterError, PeerLostError, TrainingDivergedError,
                           settle_kinds)
from recvae.models.device import autocast
from recvae.models.inputs import as_csr
from recvae.models.nn import SparseBatch
from recvae.models.training.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from recvae.models.training.diagnostics import diagnose, diagnostic_sample, warn_if_collapsed
from recvae.models.training.distributed import World, join_world, local_device, local_rows, peer_lost
from recvae.models.training.early_stopping import BestEpoch
from recvae.models.training.step import StartTraining, TrainingPlan, TrainingStep

log = logging.getLogger(__name__)
# One line per epoch where no progress bar is drawn (logs, nohup, CI); the CLI shows it unless --quiet.
progress_log = logging.getLogger("recvae.progress")

EpochCallback = Callable[[dict], bool | None]  # True: stop after this epoch
# Scores the model being trained on validation users: {"ndcg@100": ..., ...} (recvae.models.training.validation)
Validate = Callable[[], dict]


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


# The modules' buffers (item features, the linear path) are fixed, and every rank computes them alike: DDP must not
# send them before every update (for the linear path, items x items floats). torch 2.13 names that
# forward_sync_buffers=False and deprecates broadcast_buffers=False, which older versions (pyproject allows 2.3) need.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


@dataclasses.dataclass
class Trainer:
    """Runs a model's ``TrainingStep``: shuffled user batches, the step's KL weight, validation after every
    epoch with early stopping on the best weights, posterior diagnostics, a checkpoint per epoch and exact
    ``resume``, progress and per-epoch callbacks (MLflow, for one). A model's ``fit(..., trainer=...)``
    hands it the step, the plan and the validation; ``Trainer`` itself knows no model.

    Started by ``torchrun`` (WORLD_SIZE > 1) it trains data-parallel: every rank shuffles the users with
    the same generator, so all see the same global batches of ``batch_size`` users; each takes the users
    it holds (every ``WORLD_SIZE``-th) and weights its batch mean by its share of the batch, and
    DistributedDataParallel all-reduces the gradients, so an update is the single-process update of the
    whole batch. Rank 0 alone validates (the scores are broadcast, so every rank stops at the same epoch),
    writes checkpoints (with every rank's generators) and runs the callbacks.

    A callback gets each epoch's record (a dict: loss, validation scores, seconds, ...); one that returns
    True ends the training after that epoch, which then keeps its best epoch's weights as early stopping does
    (a time budget, a target score). Under torchrun rank 0's callbacks decide for every rank.
    """

    checkpoint_dir: str | Path | None = None
    resume: bool = False
    callbacks: Sequence[EpochCallback] = ()
    progress: bool | None = None  # None: a bar when stderr is a terminal

    def __post_init__(self):
        settle_kinds(self)  # a list of callbacks stays a list: the annotation asks for any sequence
        if callable(self.callbacks) or not all(callable(callback) for callback in self.callbacks):
            raise ParameterError("callbacks", self.callbacks, "expected a sequence of functions of an epoch's record, "
                                 "e.g. (print,)")

    def run(self, start: StartTraining, user_items: sp.csr_matrix | UserRows, plan: TrainingPlan,
            validate: Validate | None = None) -> list[dict]:
        """Train the step ``start`` builds on ``user_items`` (checked by the model; a ``UserRows`` under
        torchrun) as ``plan`` says, validating with ``validate`` after every epoch, and return the epochs'
        records. The step's module ends in its best epoch's weights (the last without ``validate``)."""
        if self.resume and self.checkpoint_dir is None:
            raise ParameterError("resume", True, "needs {checkpoint_dir}, the folder of the interrupted run")
        device = local_device(plan.device)
        world = join_world(device)
        train = user_items
        if isinstance(train, UserRows):  # the rows as the model takes them, the statistics summed over ranks
            train = gathered_rows(as_csr(train.matrix, binarize=plan.binarize), train.rows, train.n_users, world.gather)
            if train.nnz == 0:
                raise DataError("user_items has no interactions to learn from")
        # Noise (dropout, sampling) is each rank's own; the shuffle is shared, so the global batches agree.
        seed = plan.seed + 7919 * world.rank
        generator = torch.Generator().manual_seed(seed)
        device_generator = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed + 1)
        step = start(train, device, generator, device_generator)
        shuffle = generator
        if world.size > 1:  # rank 0's stream as it stands after the initialisation, as one process would go on
            shuffle = torch.Generator()
            shuffle.set_state(world.from_main(generator.get_state()))
        run = _Run(plan, step, world, device, _Generators(generator, device_generator, shuffle),
                   _Precision.of(plan.precision, device), BestEpoch(plan.patience), _Progress(),
                   {"data": _data_key(train), "model": _json_ready(plan.identity)})
        if world.size > 1:
            if not all(phase.batched for phase in step.phases):
                raise ValueError("a model that reads its own data (an unbatched phase) cannot train under torchrun")
            run.forward = torch.nn.parallel.DistributedDataParallel(
                _BatchLoss(step), device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=not all(phase.every_parameter for phase in step.phases), **_NO_BUFFER_SYNC)
        if self.resume:
            self._restore(run)
        try:
            self._loop(run, train, validate)
        except (RuntimeError, PeerLostError) as exc:  # DDP's own all-reduce, or one of the World's collectives
            if world.size == 1 or not (isinstance(exc, PeerLostError) or peer_lost(exc)):
                raise
            where = (f"; the checkpoints in {self.checkpoint_dir} resume every process" if self.checkpoint_dir
                     else "; it wrote no checkpoints (checkpoint_dir) to resume from")
            raise world.peer_lost_error(exc, self.checkpoint_dir, where) from None
        if run.best.restore(step.module):
            log.info("best %s %.4f at epoch %d", plan.validation_metric, run.best.score, run.best.epoch)
        if step.latent_dim and world.main:  # said once, as the rest of a run's output
            warn_if_collapsed(run.progress.history, run.best.epoch, step.latent_dim, step.beta_cap)
        step.module.eval()
        return run.progress.history

    def _loop(self, run: _Run, train: sp.csr_matrix, validate: Validate | None) -> None:
        plan, step, world = run.plan, run.step, run.world
        held, held_rows = world.held_rows(train)
        # diagnostics look at a sample of the users rank 0 holds (all of them in one process)
        sample = diagnostic_sample(held, plan.seed) if step.latent_dim else None
        epochs = step.epochs or plan.epochs
        show = world.main and (self.progress if self.progress is not None else sys.stderr.isatty())
        best, progress = run.best, run.progress
        with tqdm(total=epochs, initial=progress.epoch, desc="epochs", unit="epoch", disable=not show, leave=False) as bar:
            while progress.epoch < epochs and not best.exhausted:
                started = time.perf_counter()
                record = _epoch(run, held, held_rows, train.shape[0])
                _check_finite(record, progress.epoch, plan)
                if sample is not None:
                    step.module.eval()
                    record.update(diagnose(step.posterior, sample, run.device))
                if validate is not None:
                    scores = world.from_main(validate() if world.main else None)
                    record.update({f"val_{k}": v for k, v in scores.items()})
                    best.update(scores[plan.validation_metric], progress.epoch, step.module)
                record["seconds"] = time.perf_counter() - started
                progress.history.append(record)
                log.info("epoch %d: %s", progress.epoch, format_record(record))
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.1f}", **({"val": f"{best.score:.4f}"} if validate else {}))
                if world.main and not show and self.progress is None:
                    progress_log.info(_progress_line(record, epochs, best, plan.validation_metric))
                if self.checkpoint_dir is not None:
                    self._save(run)
                stop = any([bool(callback(record)) for callback in (self.callbacks if world.main else ())])
                if world.from_main(stop):
                    log.info("a callback ended the training after epoch %d", progress.epoch)
                    break

    # -- checkpoints --------------------------------------------------------------------------
    def _save(self, run: _Run) -> None:
        """Rank 0 writes the checkpoint, with every rank's generators; the others wait until it is on disk."""
        states = run.world.gather(run.generators.states())
        if run.world.main:
            self._write(run, states)
        run.world.barrier()

    def _write(self, run: _Run, states: list[dict]) -> None:
        step, best, progress = run.step, run.best, run.progress
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
        scaler = run.precision.scaler
        save_checkpoint(self.checkpoint_dir, tensors, {
            "epoch": progress.epoch, "updates": progress.updates, "history": progress.history,
            "best_score": best.score, "best_epoch": best.epoch, "stale": best.stale, "param_groups": groups,
            "world_size": len(states), **run.key, **({"grad_scaler": scaler.state_dict()} if scaler is not None else {}),
        })

    def _restore(self, run: _Run) -> None:
        loaded = load_checkpoint(self.checkpoint_dir)
        if loaded is None:
            log.warning("%s: no checkpoint to resume from; training from the start", self.checkpoint_dir)
            return
        tensors, state = loaded
        for part, what in (("data", "other data"), ("model", "another model or config")):
            if state.get(part) != run.key[part]:
                # a setting of the model's as {name=value}: the CLI says it as the flag that gives it
                changed = "; ".join((f"{{{name}={_shown(saved)}}}" if part == "model" else f"{name} {_shown(saved)}")
                                    + f" (now {_shown(now)})"
                                    for name, saved, now in _differences(state.get(part), run.key[part]))
                raise ModelFileError(f"{self.checkpoint_dir}: checkpoint was trained on {what}: {changed}; resume "
                                     f"with the checkpoint's settings, or train without {{resume=True}}")
        saved_world = state.get("world_size", 1)
        if run.world.size > 1 and saved_world != run.world.size:
            raise ModelFileError(f"{self.checkpoint_dir}: checkpoint of a run of {saved_world} process(es); resume it with "
                                 f"as many (torchrun --nproc-per-node {saved_world}) or in one process")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        step = run.step
        step.module.load_state_dict(part("module."))
        for name, optimizer in step.optimizers().items():
            optimizer_from_flat(optimizer, tensors, state["param_groups"][name], f"optim.{name}")
        step.load_extra_state(part("extra."))
        if run.precision.scaler is not None and "grad_scaler" in state:
            run.precision.scaler.load_state_dict(state["grad_scaler"])
        # one process resuming a distributed run continues with rank 0's noise stream, which then also shuffles
        run.generators.set_states(part("rng.") if run.world.rank == 0 else part(f"rng.rank{run.world.rank}."))
        device = next(step.module.parameters()).device
        best, progress = run.best, run.progress
        best.state = {k: v.to(device) for k, v in part("best.").items()} or None
        best.score, best.epoch, best.stale = state["best_score"], state["best_epoch"], state["stale"]
        progress.epoch, progress.updates, progress.history = state["epoch"], state["updates"], state["history"]
        log.info("resuming after epoch %d from %s", progress.epoch, self.checkpoint_dir)


@dataclasses.dataclass
class _Run:
    """One run's state, as the loop's parts share it."""

    plan: TrainingPlan
    step: TrainingStep
    world: World
    device: torch.device
    generators: _Generators
    precision: _Precision
    best: BestEpoch
    progress: _Progress
    key: dict  # what a checkpoint must match to be resumed
    forward: Callable | None = None  # the batch loss; DistributedDataParallel's wrapper of it under torchrun

    def __post_init__(self):
        if self.forward is None:
            self.forward = self.step.batch_loss


def _epoch(run: _Run, held: sp.csr_matrix, held_rows: np.ndarray | None, n_users: int) -> dict:
    """One epoch of every phase; the record of its reported phases' mean loss terms (over all ranks)."""
    started = time.perf_counter()
    step, progress, world = run.step, run.progress, run.world
    step.module.train()
    batch_size = run.plan.batch_size
    updates_per_epoch = math.ceil(n_users / batch_size)
    totals: dict[str, float] = {}
    beta = None
    step.start_epoch(progress.epoch)
    for phase in step.phases:
        for _ in range(phase.passes):
            if phase.batched:
                terms = {}
                for rows in _shuffled_batches(n_users, batch_size, run.generators.shuffle):
                    beta = step.kl_weight(progress.updates, updates_per_epoch)
                    mine = rows if held_rows is None else local_rows(rows, held_rows)
                    # every rank takes part in every update (DDP's all-reduce): one without users of this
                    # batch scores one of its users at weight 0
                    batch = SparseBatch.from_csr(held[mine if mine.size else [0]], run.device)
                    weight = world.size * mine.size / rows.size
                    batch_terms = _update(run, phase.name, batch, beta or 0.0, weight)
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


def _update(run: _Run, phase: str, batch: SparseBatch, beta: float, weight: float) -> dict[str, float]:
    """One optimiser update on a batch's loss times ``weight`` (1 in one process; under torchrun the rank's
    share of the global batch times the world size, which DDP's gradient average divides back out)."""
    step, precision = run.step, run.precision
    with precision.autocast():
        loss, terms = run.forward(phase, batch, beta)
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


def _check_finite(record: dict, epoch: int, plan: TrainingPlan) -> None:
    """A loss that is no longer a number poisons every weight it updates: stop before validating, keeping or
    saving such an epoch (a study records the setting as diverged; ``recvae train`` says which)."""
    if not math.isfinite(record["loss"]):
        name = plan.identity.get("name", "the model")
        raise TrainingDivergedError(f"{name}: the training loss was {record['loss']} in epoch {epoch}: the "
                                    "setting diverged (a lower learning_rate, or fp32 precision, usually keeps it finite)")


def _shuffled_batches(n_users: int, batch_size: int, generator: torch.Generator):
    """Row indices of each batch of one shuffled pass (sorted within a batch: CSR rows slice faster)."""
    order = torch.randperm(n_users, generator=generator).numpy()
    for start in range(0, n_users, batch_size):
        yield np.sort(order[start : start + batch_size])


def _add(totals: dict, terms: dict) -> None:
    for name, value in terms.items():
        totals[name] = totals.get(name, 0.0) + value


def _differences(saved, now, prefix: str = "") -> list[tuple[str, object, object]]:
    """The settings (dotted paths into nested dicts, "config." left out) whose values differ."""
    if not (isinstance(saved, dict) and isinstance(now, dict)):
        return [] if saved == now else [(prefix or "value", saved, now)]
    found = []
    for key in sorted(set(saved) | set(now), key=str):
        name = key if prefix in ("", "config") else f"{prefix}.{key}"
        found += _differences(saved.get(key, "unset"), now.get(key, "unset"), name)
    return found


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)  # 4.8, not 4.800000000000001


def _data_key(train: sp.csr_matrix) -> dict:
    return {"n_users": int(train.shape[0]), "n_items": int(train.shape[1]), "nnz": int(train.nnz)}


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
