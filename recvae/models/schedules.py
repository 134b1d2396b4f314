"""KL weight (β) schedules: pure functions of the update count."""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

BETA_SCHEDULES = ("linear", "constant", "cyclical", "sigmoid")


def linear_beta(step: int, cap: float, total_anneal_steps: int) -> float:
    """Liang et al.: β grows by 1/total_anneal_steps per update and stops at ``cap``."""
    if total_anneal_steps <= 0:
        return cap
    return min(cap, step / total_anneal_steps)


def cyclical_beta(step: int, cap: float, cycle_steps: int, ramp_fraction: float = 0.5) -> float:
    """Fu et al. (NAACL 2019): cycles of ``cycle_steps`` updates; β rises linearly from 0 to ``cap``
    over the first ``ramp_fraction`` of each cycle and holds there for the rest."""
    if cycle_steps <= 0:
        return cap
    position = (step % cycle_steps) / cycle_steps
    return cap * min(1.0, position / ramp_fraction)


def sigmoid_beta(step: int, cap: float, total_anneal_steps: int, steepness: float = 10.0) -> float:
    """A logistic ramp (Bowman et al. 2016) centred on half of ``total_anneal_steps``:
    cap·σ(steepness·(step/total − 1/2)), within 1% of the cap by ``total_anneal_steps``."""
    if total_anneal_steps <= 0:
        return cap
    return cap / (1.0 + math.exp(-steepness * (step / total_anneal_steps - 0.5)))


def beta_at(schedule: str, step: int, cap: float, total_anneal_steps: int) -> float:
    """β after ``step`` updates under one of BETA_SCHEDULES.

    ``total_anneal_steps`` is, for "linear", the updates at which β would reach 1 (the paper's
    parameterisation: the cap is reached at cap·total); for "sigmoid", the updates to reach the cap;
    for "cyclical", the length of one cycle; "constant" ignores it.
    """
    if schedule == "linear":
        return linear_beta(step, cap, total_anneal_steps)
    if schedule == "constant":
        return cap
    if schedule == "cyclical":
        return cyclical_beta(step, cap, total_anneal_steps)
    if schedule == "sigmoid":
        return sigmoid_beta(step, cap, total_anneal_steps)
    raise ValueError(f"unknown beta schedule {schedule!r}; expected one of {BETA_SCHEDULES}")


def anneal_steps(config, updates_per_epoch: int) -> int:
    """The schedule's ``total_anneal_steps`` where given, else the one ``anneal_epochs`` implies, else
    ``anneal_fraction`` of ``epochs`` (linear: β reaches the cap, not 1, after that many epochs)."""
    if config.total_anneal_steps is not None:
        return config.total_anneal_steps
    epochs = config.anneal_epochs if config.anneal_epochs is not None else config.anneal_fraction * config.epochs
    steps = epochs * updates_per_epoch
    return max(1, round(steps / config.beta_cap if config.beta_schedule == "linear" and config.beta_cap > 0 else steps))


def warn_if_beta_stays_low(config, epochs: int, updates_per_epoch: int) -> bool:
    """Before training: say so when a length the user gave the anneal (``total_anneal_steps``, ``anneal_epochs``)
    cannot reach the cap within the epochs (the paper's 200,000 steps on a log of a few thousand users), how
    far it gets and what would reach it. The default length reaches it by construction."""
    if config.beta_schedule not in ("linear", "sigmoid") or config.beta_cap <= 0:
        return False
    updates = epochs * updates_per_epoch
    total = anneal_steps(config, updates_per_epoch)
    final = beta_at(config.beta_schedule, updates, config.beta_cap, total)
    if final >= 0.99 * config.beta_cap:
        return False
    needed = math.ceil(updates / config.beta_cap) if config.beta_schedule == "linear" else updates
    log.warning(
        "β will reach only %.3g of its cap %.3g: %d epochs are %d updates, and the %s schedule over "
        "total_anneal_steps=%d needs more%s. total_anneal_steps=%d reaches the cap at the last epoch; leaving "
        "total_anneal_steps and anneal_epochs out reaches it at anneal_fraction of the epochs",
        final, config.beta_cap, epochs, updates, config.beta_schedule, total,
        " (the model trains in effect as a denoising autoencoder)" if final < 0.1 * config.beta_cap else "", needed,
    )
    return True
