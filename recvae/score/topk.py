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
    if allowed_items is not None:  # sorted and distinct: ties keep item order, no item comes twice
        allowed_items = np.unique(np.asarray(allowed_items, dtype=np.int64))
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
    are sorted. Same values as torch.topk; among tied scores the earlier item comes first on every
    path (torch.topk alone leaves ties in any order), so a top-N depends neither on the device nor on
    how the catalogue was cut. Rows with a NaN keep torch.topk's ordering (NaN first).
    """
    users, width = scores.shape
    if scores.device.type != "cpu" or scores.dtype != torch.float32 or width // GROUP < 4 * k:
        return _tie_ordered_topk(scores.float(), k)  # the kernel is for float32 rows wide enough to pay for the cut
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


def _tie_ordered_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk on int64 keys that order by score, then by earlier item: the float's bits made
    monotone (negative floats' magnitude bits flipped) in the high half, the reversed index in the low."""
    width = scores.shape[1]
    bits = (scores + 0.0).view(torch.int32).to(torch.int64)  # + 0.0 makes -0.0 the +0.0 it equals
    keys = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) * (1 << 32) + (width - 1 - torch.arange(width, device=scores.device))
    items = torch.topk(keys, k, dim=1).indices
    values = scores.gather(1, items)
    nan = torch.isnan(scores).any(dim=1)
    if nan.any():  # a NaN's bits order it by its sign bit: keep torch.topk's NaN-first there
        values[nan], items[nan] = torch.topk(scores[nan], k, dim=1)
    return values, items


def top_n_in_chunks(score_items, n_items: int, chunk: int, n: int, exclude: sp.csr_matrix | None = None,
                    allowed_items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``top_n_from_scores`` over a catalogue scored ``chunk`` items at a time (``score_items(slice)`` gives
    a block's scores for those items), keeping a running top ``n``: the same items, scores and order,
    ties included, with a score block of ``chunk`` columns at most."""
    allowed = None if allowed_items is None else np.unique(np.asarray(allowed_items, dtype=np.int64))
    width = min(n, n_items if allowed is None else len(allowed))
    best_items = best_values = None
    for start in range(0, n_items, chunk):
        stop = min(start + chunk, n_items)
        part = None if allowed is None else allowed[(allowed >= start) & (allowed < stop)] - start
        if part is not None and part.size == 0:
            continue
        items, values = top_n_from_scores(score_items(slice(start, stop)), n, None if exclude is None else exclude[:, start:stop], part)
        items = np.where(items >= 0, items + start, -1)
        if best_items is None:
            best_items, best_values = items, values
            continue
        items, values = np.hstack([best_items, items]), np.hstack([best_values, values])
        # stable: of tied scores the running list's (earlier) items stay first, -inf padding goes last
        order = np.argsort(-values, axis=1, kind="stable")[:, :width]
        best_items, best_values = np.take_along_axis(items, order, 1), np.take_along_axis(values, order, 1)
    return best_items[:, :width], best_values[:, :width]


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
