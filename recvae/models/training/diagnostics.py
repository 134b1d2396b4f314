"""Posterior-collapse diagnostics of a VAE's encoder, measured on a fixed sample of users.

A latent dimension is *active* (Burda et al. 2016) when its posterior mean varies across users:
Var_users(E[z_d | x]) above a threshold (0.01, theirs). A collapsed dimension has mean ≈ 0 and
variance ≈ 1 for every user, so it carries no information and its KL to N(0, 1) is ≈ 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from recvae.models.nn import SparseBatch, gaussian_kl

log = logging.getLogger(__name__)

ACTIVE_THRESHOLD = 0.01
SAMPLE_USERS = 5000

Posterior = Callable[[SparseBatch], tuple[torch.Tensor, torch.Tensor]]


def posterior_diagnostics(mu: torch.Tensor, logvar: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> dict:
    """Active units, mean posterior variance and KL(q || N(0, I)) per dimension, from the
    posterior means and log-variances of a sample of users (users x latent)."""
    mu, logvar = mu.double(), logvar.double()
    activity = mu.var(dim=0, unbiased=False)
    kl_per_dim = gaussian_kl(mu, logvar).mean(dim=0)
    return {
        "active_units": int((activity > threshold).sum()),
        "posterior_variance": float(logvar.exp().mean()),
        "kl_per_dim": [round(float(v), 5) for v in kl_per_dim],
    }


def diagnostic_sample(train: sp.csr_matrix, seed: int, size: int = SAMPLE_USERS) -> sp.csr_matrix:
    """The users every epoch's diagnostics look at: fixed for a run, drawn with their own
    generator so measuring does not change the training's random stream."""
    n = train.shape[0]
    if n <= size:
        return train
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return train[rows]


def diagnose(posterior: Posterior, sample: sp.csr_matrix, device: torch.device, block: int = 1000) -> dict:
    """Encode ``sample`` without noise or dropout (``posterior``: a batch's mean and log-variance)
    and measure its posteriors."""
    mus, logvars = [], []
    with torch.no_grad():
        for start in range(0, sample.shape[0], block):
            batch = SparseBatch.from_csr(sample[start : start + block], device)
            mu, logvar = posterior(batch)
            mus.append(mu.cpu())
            logvars.append(logvar.cpu())
    return posterior_diagnostics(torch.cat(mus), torch.cat(logvars))


def warn_if_collapsed(history: list[dict], kept_epoch: int, latent_dim: int, beta_cap: float | None = None) -> bool:
    """Log a warning when most latent dimensions are inactive in the kept epoch (the last one when no
    epoch was validated, ``kept_epoch`` < 1); True if so.

    With a β schedule (``beta_cap``) the advice to lower β applies only once β has come near its cap:
    an epoch whose β is below half of it is not reported (early in an anneal few units are active)."""
    if not history:
        return False
    record = history[kept_epoch - 1] if kept_epoch > 0 else history[-1]
    active = record.get("active_units")
    if active is None or active * 2 >= latent_dim:
        return False
    beta = record.get("beta")
    if beta_cap is not None and beta is not None and beta < 0.5 * beta_cap:
        log.info("%d of %d latent dimensions active at epoch %s, with β %.3g still below half its cap %.3g",
                 active, latent_dim, record.get("epoch"), beta, beta_cap)
        return False
    log.warning(
        "posterior collapse: only %d of %d latent dimensions are active (variance of the posterior mean above %g) "
        "at the kept epoch %s%s; a lower β cap, free bits or a slower anneal keep more of them",
        active, latent_dim, ACTIVE_THRESHOLD, record.get("epoch"),
        f", β {beta:.3g} (cap {beta_cap:.3g})" if beta is not None and beta_cap is not None else "",
    )
    return True
