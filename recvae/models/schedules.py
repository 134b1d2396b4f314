"""KL weight (β) schedules: pure functions of the update count."""

from __future__ import annotations

import math

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
