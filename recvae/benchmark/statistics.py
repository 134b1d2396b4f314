"""Confidence intervals over split seeds and paired comparisons over (seed, test user) pairs."""

from __future__ import annotations

import numpy as np
from scipy import stats


def confidence_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t interval; NaN half-width for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def paired_difference(a, b, level: float = 0.95) -> dict:
    """Compare two models scored on the same units (a[i] and b[i] are the same user and seed).

    Returns the mean of ``a - b``, its t interval, the paired t-test's and the Wilcoxon
    signed-rank test's two-sided p-values, and the number of pairs. Pairs with a NaN are dropped.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same shape, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = a[keep] - b[keep]
    mean, half = confidence_interval(diff, level)
    if len(diff) < 2 or not np.any(diff):
        p_t = p_wilcoxon = 1.0 if len(diff) >= 2 else float("nan")
    else:
        p_t = float(stats.ttest_1samp(diff, 0.0).pvalue)
        p_wilcoxon = float(stats.wilcoxon(diff).pvalue)
    return {"mean": mean, "ci": half, "p_t": p_t, "p_wilcoxon": p_wilcoxon, "pairs": int(len(diff))}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment, so several comparisons against one model keep the 5% error rate."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
