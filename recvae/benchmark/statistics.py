"""Confidence intervals over split seeds and paired comparisons that respect the seeds' structure."""

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


def paired_over_seeds(a_by_seed, b_by_seed, level: float = 0.95) -> dict:
    """Compare two models scored on the same test users of each split seed (``a_by_seed[s][i]`` and
    ``b_by_seed[s][i]`` are one user of seed ``s``); users with a NaN in either are dropped.

    (seed, user) pairs are not independent: users recur across seeds and all of a seed's users share one
    fitted model. So with two or more seeds the unit is the seed: the mean of ``a - b`` over its users,
    and a one-sample t-test of those per-seed means (seeds - 1 degrees of freedom). With one seed the
    users are the only replication: a paired t-test over them, which speaks for these two fitted models
    on this split, not for another split or another training run.

    Returns the mean difference, its t interval's half-width, the two-sided p, the test's name, and the
    numbers of seeds and user pairs.
    """
    per_seed, diffs = [], []
    for a, b in zip(a_by_seed, b_by_seed, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"paired values must have the same shape, got {a.shape} and {b.shape}")
        keep = ~(np.isnan(a) | np.isnan(b))
        diffs.append(a[keep] - b[keep])
        if keep.any():
            per_seed.append(float(diffs[-1].mean()))
    if len(per_seed) >= 2:
        units, test = np.asarray(per_seed), f"paired t-test over the {len(per_seed)} per-seed mean differences"
    else:
        units = np.concatenate(diffs) if diffs else np.empty(0)
        test = "paired t-test over the test users of one seed (no replication over splits)"
    mean, half = confidence_interval(units, level)
    if len(units) < 2:
        p = float("nan")
    elif not np.any(units):
        p = 1.0
    elif np.all(units == units[0]):  # no spread: t is infinite
        p = 0.0
    else:
        p = float(stats.ttest_1samp(units, 0.0).pvalue)
    return {"mean": mean, "ci": half, "p": p, "test": test, "seeds": len(per_seed),
            "pairs": int(sum(len(d) for d in diffs)), "per_seed": per_seed}


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
