"""The one top-N kernel: mask items per user, then torch.topk over the block."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def top_n_from_scores(
    scores: torch.Tensor,
    n: int,
    exclude: sp.csr_matrix | None = None,
    allowed_items: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` item indices and scores per row of ``scores`` (users x items), best first.

    ``exclude`` marks items a row must not get (e.g. its history); ``allowed_items``
    restricts every row to those item indices. Masked items score -inf and come
    last, so ``n`` larger than what is left pads with them. ``scores`` is masked in
    place: a copy of a users x items block costs as much as the top-k itself.
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
    values, indices = torch.topk(scores, n, dim=1, sorted=True)
    indices = indices.cpu().numpy()
    if allowed_items is not None:
        indices = np.asarray(allowed_items, dtype=np.int64)[indices]
    return indices, values.cpu().numpy()
