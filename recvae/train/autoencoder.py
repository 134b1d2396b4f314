"""The epoch loop of the autoencoders: shuffled user batches, beta annealing, early stopping,
a checkpoint per epoch and exact resumption."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recvae.errors import ModelFileError
from recvae.models.nn import AutoEncoder, SparseBatch, gaussian_kl, negative_log_likelihood, normalised_input
from recvae.train.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from recvae.train.diagnostics import diagnose, diagnostic_sample, warn_if_collapsed
from recvae.train.early_stopping import BestEpoch
from recvae.train.schedules import beta_at

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict], None]


@dataclasses.dataclass
class LossTerms:
    """What one batch contributes; summed over users so epochs average exactly."""

    loss: float = 0.0
    reconstruction: float = 0.0
    kl: float = 0.0
    users: int = 0


def train_step(
    module: AutoEncoder,
    batch: SparseBatch,
    *,
    dropout: float,
    beta: float,
    likelihood: str,
    l2: float,
    generator: torch.Generator,
    training: bool = True,
    free_bits: float = 0.0,
) -> tuple[torch.Tensor, LossTerms]:
    """Loss of one batch: the negative beta-ELBO (Mult-VAE) or the penalised likelihood (Mult-DAE).

    With ``free_bits`` δ > 0 the penalised KL is Σ_d max(δ, KL_d), KL_d averaged over the batch
    (Kingma et al. 2016): a dimension below δ nats costs δ whatever it encodes, so β stops
    pushing it to the prior. The reported KL is always the true one.
    """
    values = normalised_input(batch)
    if training and dropout > 0:
        keep = torch.rand(values.shape, generator=generator, device=values.device) >= dropout
        values = values * keep / (1.0 - dropout)
    mu, logvar = module.encode(batch, values)
    if module.variational and training:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
    else:
        z = mu
    logits = module.decode(z)
    nll = negative_log_likelihood(logits, batch, likelihood).mean()
    if module.variational:
        kl_per_dim = gaussian_kl(mu, logvar).mean(dim=0)
        kl = kl_per_dim.sum()
        loss = nll + beta * (kl_per_dim.clamp_min(free_bits).sum() if free_bits > 0 else kl)
    else:
        kl = torch.zeros((), device=mu.device)
        loss = nll
    if l2 > 0:
        loss = loss + l2 * sum(w.pow(2).sum() for w in module.weight_matrices())
    n = batch.n_rows
    return loss, LossTerms(loss.item() * n, nll.item() * n, kl.item() * n, n)


def fit_autoencoder(
    module: AutoEncoder,
    train: sp.csr_matrix,
    config,
    device: torch.device,
    validate: Callable[[], dict[str, float]] | None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: tuple[EpochCallback, ...] = (),
    progress: bool | None = None,
) -> list[dict]:
    """Train ``module`` in place and return the per-epoch history; best validation weights win.

    ``config`` is a Mult-VAE or Mult-DAE config (fields of TrainingConfig plus
    dropout, likelihood, l2 and, for Mult-VAE, the beta schedule and free bits). A Mult-VAE's
    records carry posterior diagnostics (active units, posterior variance, KL per dimension)
    measured on a fixed sample of training users after every epoch.
    """
    variational = module.variational
    cpu_gen = torch.Generator().manual_seed(config.seed)
    dev_gen = cpu_gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(config.seed + 1)
    module.reset_parameters(cpu_gen)
    module.to(device)
    optimizer = make_adam(module.parameters(), config.learning_rate)

    history: list[dict] = []
    step, start_epoch = 0, 0
    best = BestEpoch(config.patience)
    sample = diagnostic_sample(train, config.seed) if variational else None
    data_key = {"n_users": int(train.shape[0]), "n_items": int(train.shape[1]), "nnz": int(train.nnz)}
    config_key = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("epochs", "device", "patience")}

    if resume and checkpoint_dir is not None:
        loaded = load_checkpoint(Path(checkpoint_dir))
        if loaded is None:
            log.warning("%s: no checkpoint to resume from; training from the start", checkpoint_dir)
        else:
            tensors, state = loaded
            if state["data"] != data_key:
                raise ModelFileError(f"{checkpoint_dir}: checkpoint was trained on other data ({state['data']}, now {data_key})")
            if state["config"] != json_ready(config_key):
                raise ModelFileError(f"{checkpoint_dir}: checkpoint was trained with another config; train without --resume")
            module.load_state_dict({k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")})
            optimizer_from_flat(optimizer, tensors, state["param_groups"])
            cpu_gen.set_state(tensors["rng.cpu"])
            if dev_gen is not cpu_gen:
                dev_gen.set_state(tensors["rng.device"])
            best.state = {k[len("best."):]: v.to(device) for k, v in tensors.items() if k.startswith("best.")} or None
            history, step, start_epoch = state["history"], state["step"], state["epoch"] + 1
            best.score, best.epoch, best.stale = state["best_score"], state["best_epoch"], state["stale"]
            log.info("resuming from epoch %d of %s", start_epoch, checkpoint_dir)

    n_users = train.shape[0]
    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=config.epochs, initial=start_epoch, desc="epochs", unit="epoch", disable=not show, leave=False)
    try:
        for epoch in range(start_epoch, config.epochs):
            if best.exhausted:
                break
            started = time.perf_counter()
            module.train()
            order = torch.randperm(n_users, generator=cpu_gen).numpy()
            totals = LossTerms()
            beta = 0.0
            for start in range(0, n_users, config.batch_size):
                rows = np.sort(order[start : start + config.batch_size])
                batch = SparseBatch.from_csr(train[rows], device)
                beta = beta_at(config.beta_schedule, step, config.beta_cap, config.total_anneal_steps) if variational else 0.0
                loss, terms = train_step(
                    module, batch, dropout=config.dropout, beta=beta, likelihood=config.likelihood,
                    l2=config.l2, generator=dev_gen, free_bits=getattr(config, "free_bits", 0.0),
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                for f in ("loss", "reconstruction", "kl", "users"):
                    setattr(totals, f, getattr(totals, f) + getattr(terms, f))
            record = {
                "epoch": epoch + 1,
                "loss": totals.loss / totals.users,
                "reconstruction": totals.reconstruction / totals.users,
                "kl": totals.kl / totals.users,
                "beta": beta,
                "train_seconds": time.perf_counter() - started,
            }
            module.eval()
            if variational:
                record.update(diagnose(module.encode, sample, device))
            if validate is not None:
                scores = validate()
                record.update({f"val_{k}": v for k, v in scores.items()})
                best.update(scores[config.validation_metric], epoch + 1, module)
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            log.info("epoch %d: %s", epoch + 1, format_record(record))
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.1f}", **({"val": f"{best.score:.4f}"} if validate else {}))
            if checkpoint_dir is not None:
                tensors = {f"module.{k}": v for k, v in module.state_dict().items()}
                if best.state is not None:
                    tensors.update({f"best.{k}": v for k, v in best.state.items()})
                opt_tensors, groups = optimizer_to_flat(optimizer)
                tensors.update(opt_tensors)
                tensors["rng.cpu"] = cpu_gen.get_state()
                if dev_gen is not cpu_gen:
                    tensors["rng.device"] = dev_gen.get_state()
                tensors["epoch_marker"] = torch.tensor(epoch)
                save_checkpoint(Path(checkpoint_dir), tensors, {
                    "epoch": epoch, "step": step, "history": history, "best_score": best.score,
                    "best_epoch": best.epoch, "stale": best.stale, "param_groups": groups,
                    "data": data_key, "config": json_ready(config_key),
                })
            for callback in callbacks:
                callback(record)
    finally:
        bar.close()
    if best.restore(module):
        log.info("best %s %.4f at epoch %d", config.validation_metric, best.score, best.epoch)
    if variational:
        warn_if_collapsed(history, best.epoch, module.latent_dim)
    module.eval()
    return history


def format_record(record: dict) -> str:
    """An epoch record's scalars for the log (the per-dimension KL list stays in the history)."""
    return ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch" and isinstance(v, (int, float)))


def make_adam(parameters, learning_rate: float) -> torch.optim.Adam:
    """Adam, fused where torch has the kernel: the unfused update makes ~10 passes over the
    item-sized weights and took a fifth of a CPU epoch on ML-1M; fused it takes one."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, lr=learning_rate)


def json_ready(value):
    """Tuples to lists, so a config compares equal to its JSON round trip."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
