"""What every model checks its input with, and the item similarity most models answer ``similar_items`` by."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recvae.errors import DataError, whole_at_least


def as_csr(user_items, n_items: int | None = None, what: str = "user_items", binarize: bool = False) -> sp.csr_matrix:
    """Check and convert a users x items matrix (float32 CSR); the first place bad input is caught."""
    if not sp.issparse(user_items):
        hint = ""
        if type(user_items).__name__ == "DataFrame":  # a log as read: the matrix is one call away
            hint = ("; a log's rows (user, item[, rating]) become one with recvae.Interactions.from_frame(frame), whose "
                    ".matrix, .items and a split of it (recvae.split) the models take, or use recommend_df for IDs")
        raise DataError(f"{what} must be a scipy.sparse matrix (users x items), got {type(user_items).__name__}{hint}")
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    if n_items is not None and matrix.shape[1] != n_items:
        raise DataError(f"{what} has {matrix.shape[1]} item columns; the model was fitted on {n_items} items")
    if matrix.nnz and (not np.isfinite(matrix.data).all()):
        raise DataError(f"{what} contains NaN or infinite values")
    # the changes below go to a copy, made once, where the conversion above left the caller's arrays shared
    owned = not any(np.may_share_memory(getattr(matrix, part), getattr(user_items, part))
                    for part in ("data", "indices", "indptr") if hasattr(user_items, part))
    if not matrix.has_canonical_format:
        # A model sums a row's entries in their stored order, and float sums depend on it: the same matrix
        # stored with its columns in another order trained to other figures (a masked split's rows are unsorted).
        # A pair stored twice counts once under binarize, as its sum otherwise.
        matrix, owned = (matrix if owned else matrix.copy()), True
        matrix.sum_duplicates()
    if binarize and not (matrix.data == 1.0).all():  # every stored entry, a rating of 0 included; the caller's stays
        matrix = matrix if owned else matrix.copy()
        matrix.data[:] = 1.0
    return matrix


def cosine_similar_items(vectors: torch.Tensor, itemid, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` rows of ``vectors`` (one per item) closest in cosine to row ``itemid``, itself first; for an
    array of item indices, one row of each per query (implicit's batch call)."""
    whole_at_least(1, N=n)
    queries = np.atleast_1d(np.asarray(itemid))
    if queries.ndim != 1 or (queries.size and queries.dtype.kind not in "iu"):
        raise DataError(f"itemid must be an item index or a list of them, got {itemid!r}")
    outside = (queries < 0) | (queries >= vectors.shape[0])
    if outside.any():
        raise DataError(f"item index {queries[outside][0]} is outside [0, {vectors.shape[0]})")
    with torch.no_grad():
        # the norms, not a normalised copy of every vector: a copy per call (items x d) grows a process that
        # keeps each call's answer (glibc's heap cannot give the freed copies back between them)
        vectors = vectors.float()
        norms = torch.linalg.vector_norm(vectors, dim=1).clamp_min(1e-12)
        rows, columns = torch.arange(len(queries)), torch.as_tensor(queries, dtype=torch.long, device=vectors.device)
        similarity = (vectors[columns] @ vectors.T) / (norms[columns, None] * norms[None, :])
        own = similarity[rows, columns].clone()  # 1, or 0 for an item whose vector is zero
        similarity[rows, columns] = torch.inf  # itself first, even beside an item with the same direction
        values, indices = torch.topk(similarity, min(n, vectors.shape[0]), dim=1)
        values[:, 0] = own
    ids, scores = indices.cpu().numpy(), values.cpu().numpy()
    return (ids, scores) if np.ndim(itemid) else (ids[0], scores[0])
