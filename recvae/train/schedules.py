"""KL weight schedules."""

from __future__ import annotations


def linear_beta(step: int, cap: float, total_anneal_steps: int) -> float:
    """Liang et al.: beta grows linearly with the update count and stops at ``cap``."""
    if total_anneal_steps <= 0:
        return cap
    return min(cap, step / total_anneal_steps)
