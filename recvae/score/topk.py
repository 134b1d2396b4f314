"""The one top-N kernel: mask items per user, then select the best ``n`` of each row."""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
import torch

# Items per group in the kernel below: a row's group maxima are one pass over it,
# and the k-th largest of 625 maxima (20,000 items) is a short quickselect.
GROUP = 32


def top_n_from_scores(
    scores: torch.Tensor,
    n: int,
    exclude: sp.csr_matrix | None = None,
    allowed_items: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` item indices and scores per row of ``scores`` (users x items), best first.

    ``exclude`` marks items a row must not get (e.g. its history); ``allowed_items``
    restricts every row to those item indices. The width is ``min(n, allowed items)``;
    a row with fewer items left than that (or whose items score -inf) is padded with
    item -1 and score -inf, as implicit pads its batch results: a masked item is never
    returned. ``scores`` is masked in place: a copy of a users x items block costs as
    much as the top-k itself.
    """
    scores = scores.float()
    if exclude is not None and exclude.nnz:
        rows = torch.from_numpy(np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))).to(scores.device)
        cols = torch.from_numpy(exclude.indices.astype(np.int64)).to(scores.device)
        scores.index_put_((rows, cols), torch.tensor(-torch.inf, device=scores.device))
    if allowed_items is not None:
        allowed = torch.from_numpy(np.asarray(allowed_items, dtype=np.int64)).to(scores.device)
        scores = scores[:, allowed]
    n = min(n, scores.shape[1])
    values, indices = top_k_rows(scores, n)
    indices, values = indices.cpu().numpy(), values.cpu().numpy()
    if allowed_items is not None:
        indices = np.asarray(allowed_items, dtype=np.int64)[indices]
    indices[values == -np.inf] = -1
    return indices, values


def top_k_rows(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(scores, k, dim=1)`` (sorted, best first), faster on wide CPU rows.

    torch.topk on the CPU copies every row into (value, index) pairs before selecting:
    over 20,000 items that is a sixth of the decoder's own time. Here a compiled kernel
    cuts each row into groups of ``GROUP`` items; the ``k`` groups with the largest maxima
    hold the row's top ``k`` (an item outside them is beaten by those ``k`` maxima), so
    only items at or above the ``k``-th largest maximum, typically little more than ``k``,
    are sorted. Same values as torch.topk; among tied scores the earlier item comes first.
    Rows with a NaN keep torch.topk's ordering (NaN first).
    """
    users, width = scores.shape
    if scores.device.type != "cpu" or scores.dtype != torch.float32 or width // GROUP < 4 * k:
        return torch.topk(scores, k, dim=1)  # the kernel is for float32 rows wide enough to pay for the cut
    block = scores.detach().contiguous().numpy()
    values = np.empty((users, k), dtype=np.float32)
    items = np.empty((users, k), dtype=np.int64)
    # One knob for both: torch.set_num_threads also bounds the kernel's threads.
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    has_nan = _top_k_kernel(block, k, values, items)
    values, items = torch.from_numpy(values), torch.from_numpy(items)
    if has_nan.any():
        rows = torch.from_numpy(np.flatnonzero(has_nan))
        values[rows], items[rows] = torch.topk(scores[rows], k, dim=1)
    return values, items


@numba.njit(parallel=True, cache=True)
def _top_k_kernel(scores, k, values, items):
    """Fills ``values``/``items`` (users x k) for every row without a NaN; returns which rows have one."""
    users, width = scores.shape
    n_groups = width // GROUP
    tail = n_groups * GROUP  # items past the last whole group are always candidates
    has_nan = np.zeros(users, dtype=np.bool_)
    for user in numba.prange(users):
        row = scores[user]
        group_max = np.empty(n_groups, dtype=np.float32)
        nan = False
        for group in range(n_groups):
            best = np.float32(-np.inf)
            for j in range(group * GROUP, (group + 1) * GROUP):
                x = row[j]
                nan |= x != x
                if x > best:
                    best = x
            group_max[group] = best
        for j in range(tail, width):
            nan |= row[j] != row[j]
        if nan:  # NaN compares false: the threshold below would drop it
            has_nan[user] = True
            continue
        threshold = _kth_largest(group_max.copy(), k)
        kept_groups = np.flatnonzero(group_max >= threshold)
        kept_values = np.empty(kept_groups.size * GROUP + width - tail, dtype=np.float32)
        kept_items = np.empty(kept_values.size, dtype=np.int64)
        n_kept = 0
        for group in kept_groups:
            for j in range(group * GROUP, (group + 1) * GROUP):
                if row[j] >= threshold:
                    kept_values[n_kept] = row[j]
                    kept_items[n_kept] = j
                    n_kept += 1
        for j in range(tail, width):
            kept_values[n_kept] = row[j]
            kept_items[n_kept] = j
            n_kept += 1
        # Stable, so among ties the earlier item (kept in item order) comes first.
        order = np.argsort(-kept_values[:n_kept], kind="mergesort")
        for rank in range(k):
            values[user, rank] = kept_values[order[rank]]
            items[user, rank] = kept_items[order[rank]]
    return has_nan


@numba.njit(cache=True)
def _kth_largest(values, k):
    """The ``k``-th largest of ``values`` (k >= 1) by quickselect; reorders ``values``."""
    low, high, target = 0, values.size - 1, k - 1
    while low < high:
        pivot = values[(low + high) // 2]
        i, j = low, high
        while i <= j:
            while values[i] > pivot:
                i += 1
            while values[j] < pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if target <= j:
            high = j
        elif target >= i:
            low = i
        else:
            break
    return values[target]
