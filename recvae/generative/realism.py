"""How realistic a synthetic log is, against the real training log it imitates: pure functions over users x
items matrices on the same item columns (binary: an interaction is there or not)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recvae.errors import DataError, whole_at_least


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data[:] = 1.0
    return out


def popularity_sampler(user_items: sp.csr_matrix, n_users: int, seed: int = 0) -> sp.csr_matrix:
    """The baseline sampler: each user's number of items drawn from ``user_items``' history lengths, that
    many distinct items drawn independently of each other in proportion to their popularity (Gumbel top-k)."""
    whole_at_least(1, n_users=n_users)
    rng = np.random.default_rng(seed)
    matrix = _binary(user_items)
    log_popularity = np.log(np.asarray(matrix.sum(axis=0)).ravel() + 1e-12)
    lengths = rng.choice(np.diff(matrix.indptr), size=n_users)
    rows, cols = [], []
    for user, length in enumerate(lengths):
        keys = log_popularity + rng.gumbel(size=len(log_popularity))
        rows.append(np.full(length, user))
        cols.append(np.argpartition(-keys, length - 1)[:length] if length else np.empty(0, int))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, matrix.shape[1]))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions given as non-negative weights, in bits (0 to 1)."""
    p, q = np.asarray(p, float) / np.sum(p), np.asarray(q, float) / np.sum(q)
    middle = 0.5 * (p + q)

    def kl(a):
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / middle[keep])))
    return 0.5 * kl(p) + 0.5 * kl(q)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of the counts (0: every item equally popular; near 1: a few items take everything)."""
    values = np.sort(np.asarray(counts, float))
    n = len(values)
    if n == 0 or values.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ values / (n * values.sum()))


def item_counts(matrix: sp.csr_matrix) -> np.ndarray:
    """Users per item."""
    return np.bincount(matrix.indices, minlength=matrix.shape[1])


def history_lengths(matrix: sp.csr_matrix) -> np.ndarray:
    return np.diff(matrix.indptr)


def length_divergence(real: sp.csr_matrix, synthetic: sp.csr_matrix) -> float:
    """Jensen-Shannon divergence of the history-length distributions, over 30 log-spaced bins."""
    lengths = [history_lengths(real), history_lengths(synthetic)]
    top = max(int(max(x.max(initial=1) for x in lengths)), 2)
    edges = np.unique(np.geomspace(1, top + 1, 31).round())
    return jensen_shannon(*(np.histogram(x, bins=edges)[0] + 1e-9 for x in lengths))


def pmi_correlation(real: sp.csr_matrix, synthetic: sp.csr_matrix, top_items: int = 300,
                    pairs: int = 2000) -> dict[str, float]:
    """Pearson correlation of the pointwise mutual information log(P(i, j) / P(i) P(j)) of the ``pairs`` item
    pairs that co-occur most often in the real log (among its ``top_items`` most popular items), real against
    synthetic; each log's own counts, add-half smoothed so a pair the synthetic log never shows stays finite."""
    popular = np.argsort(-item_counts(real), kind="stable")[:top_items]

    def pmi(matrix):
        block = _binary(matrix)[:, popular]
        together = (block.T @ block).toarray().astype(np.float64) + 0.5
        alone = np.asarray(block.sum(axis=0)).ravel() + 0.5
        return np.log(together * matrix.shape[0] / np.outer(alone, alone)), together
    real_pmi, real_together = pmi(real)
    synthetic_pmi, _ = pmi(synthetic)
    upper = np.triu_indices(len(popular), 1)
    chosen = np.argsort(-real_together[upper], kind="stable")[:pairs]
    x, y = real_pmi[upper][chosen], synthetic_pmi[upper][chosen]
    return {"pmi_correlation": float(np.corrcoef(x, y)[0, 1]), "pairs": int(len(chosen)),
            "real_pmi": x, "synthetic_pmi": y}


def genre_shares(matrix: sp.csr_matrix, genres: list[set]) -> tuple[list[str], np.ndarray]:
    """Per user, the share of each genre among its items' genres (an item of k genres counts 1/k to each):
    (the genres, users x genres)."""
    names = sorted(set().union(*genres))
    if not names:
        raise DataError("no item has a genre")
    column = {name: i for i, name in enumerate(names)}
    rows = [i for i, item in enumerate(genres) for _ in item]
    cols = [column[g] for item in genres for g in sorted(item)]
    weights = [1.0 / len(item) for item in genres for _ in item]
    item_genre = sp.csr_matrix((weights, (rows, cols)), shape=(len(genres), len(names)))
    per_user = (_binary(matrix) @ item_genre).toarray()
    return names, per_user / np.maximum(per_user.sum(axis=1, keepdims=True), 1e-12)


def nearest_jaccard(queries: sp.csr_matrix, reference: sp.csr_matrix, block: int = 500) -> np.ndarray:
    """For each row of ``queries``, the highest Jaccard similarity of its item set to any row of ``reference``
    (a user copied from the reference scores 1)."""
    queries, reference = _binary(queries), _binary(reference)
    reference_t = reference.T.tocsr()
    query_lengths, reference_lengths = history_lengths(queries), history_lengths(reference)
    best = np.zeros(queries.shape[0])
    for start in range(0, queries.shape[0], block):
        common = (queries[start:start + block] @ reference_t).toarray()
        union = query_lengths[start:start + block, None] + reference_lengths[None, :] - common
        best[start:start + block] = (common / np.maximum(union, 1)).max(axis=1, initial=0.0)
    return best
