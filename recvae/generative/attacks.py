"""Shilling attacks on an implicit-feedback log, and the simple detectors a VAE's anomaly score is held to.

The attack models are those of Lam & Riedl (2004) and Mobasher et al. (2007), adapted to implicit feedback:
each fake profile holds one target item (the item pushed) and filler items drawn at random (random attack),
from the most popular items (bandwagon) or from one genre (segment). The detectors score users so that a
higher score is more suspicious: history length, mean popularity of the history (both as distance from
the typical user, in either direction), EASE's reconstruction error, and Mehta & Nejdl's (2009) PCA
detector (PCA-VarSelect: attack profiles are alike and so weigh little on the leading components), and how
crowded each history's neighbourhood is in the item space (mean cosine similarity to its nearest histories).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recvae.errors import DataError, ParameterError

KINDS = ("random", "bandwagon", "segment")
POPULAR_SHARE = 0.1  # a bandwagon profile's filler comes from this share of the items, the most popular


@dataclass(frozen=True)
class Attack:
    """``kind`` (random, bandwagon, segment); ``size``, fake profiles as a share of the genuine users;
    ``filler``, filler items per profile as a share of the items; ``target``, the item index pushed
    (None: drawn by ``seed`` among the less popular half of the items, the items an attacker would push)."""

    kind: str
    size: float
    filler: float
    target: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ParameterError("kind", self.kind, f"must be one of {', '.join(KINDS)}")
        for name in ("size", "filler"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ParameterError(name, getattr(self, name), "must lie in (0, 1)")


@dataclass(frozen=True)
class Poisoned:
    """The log with the fake profiles appended as its last rows: ``fake`` marks them, ``target`` is the
    item they push and ``segment`` the genre a segment attack drew from (None otherwise)."""

    matrix: sp.csr_matrix
    fake: np.ndarray
    target: int
    segment: str | None = None


def inject(user_items: sp.csr_matrix, attack: Attack, genres: list[set] | None = None) -> Poisoned:
    """Append ``attack``'s profiles to ``user_items`` (genuine users x items, binary). A segment attack needs
    each item's ``genres`` (``recvae.data.side.item_genres``); it draws from the genre of the target with
    the most items, and a profile holds as much of that genre as the filler asks for (fewer if it is small)."""
    n_users, n_items = user_items.shape
    rng = np.random.default_rng(attack.seed)
    popularity = np.bincount(user_items.indices, minlength=n_items)
    order = np.argsort(-popularity, kind="stable")
    target = attack.target if attack.target is not None else int(rng.choice(order[n_items // 2:]))
    if not 0 <= target < n_items:
        raise ParameterError("target", target, f"must be an item index below {n_items}")
    profiles = max(1, round(attack.size * n_users))
    filler = max(1, round(attack.filler * n_items))
    segment = None
    if attack.kind == "random":
        pool = np.arange(n_items)
    elif attack.kind == "bandwagon":
        pool = order[:max(round(POPULAR_SHARE * n_items), 2 * filler)]
    else:
        if genres is None or len(genres) != n_items:
            raise DataError("a segment attack needs every item's genres (an item features table with a genres column)")
        candidates = genres[target] or set().union(*genres)
        if not candidates:
            raise DataError("a segment attack needs genres, and no item has one")
        sizes = {g: sum(g in item for item in genres) for g in sorted(candidates)}
        segment = max(sizes, key=sizes.get)
        pool = np.flatnonzero([segment in item for item in genres])
    pool = pool[pool != target]
    take = min(filler, len(pool))
    rows = [np.append(rng.choice(pool, take, replace=False), target) for _ in range(profiles)]
    fake = sp.csr_matrix((np.ones(profiles * (take + 1), np.float32),
                          (np.repeat(np.arange(profiles), take + 1), np.concatenate(rows))), shape=(profiles, n_items))
    fake.sort_indices()
    matrix = sp.vstack([user_items.astype(np.float32), fake], format="csr")
    return Poisoned(matrix, np.r_[np.zeros(n_users, bool), np.ones(profiles, bool)], target, segment)


def distance_from_typical(values: np.ndarray) -> np.ndarray:
    """How far each value lies from the median, in median absolute deviations (either side counts)."""
    centre = np.median(values)
    spread = np.median(np.abs(values - centre)) or 1.0
    return np.abs(values - centre) / spread


def length_scores(user_items: sp.csr_matrix) -> np.ndarray:
    """History length's distance (on a log scale) from the typical user's."""
    return distance_from_typical(np.log1p(np.diff(user_items.indptr)))


def popularity_scores(user_items: sp.csr_matrix) -> np.ndarray:
    """The mean popularity of a history's items, as distance from the typical user's."""
    binary = user_items.astype(bool).astype(np.float64)
    popularity = np.asarray(binary.sum(axis=0)).ravel()
    lengths = np.maximum(np.diff(binary.indptr), 1)
    return distance_from_typical((binary @ popularity) / lengths)


def ease_error_scores(user_items: sp.csr_matrix, weights: np.ndarray) -> np.ndarray:
    """EASE's squared reconstruction error of each history per interaction, given its item-item ``weights``."""
    binary = user_items.astype(bool).astype(np.float64)
    error = np.zeros(binary.shape[0])
    for start in range(0, binary.shape[0], 2000):
        block = binary[start:start + 2000]
        error[start:start + 2000] = ((block.toarray() - block @ weights) ** 2).sum(axis=1)
    return error / np.maximum(np.diff(binary.indptr), 1)


def pca_scores(user_items: sp.csr_matrix, components: int = 3) -> np.ndarray:
    """PCA-VarSelect (Mehta & Nejdl 2009): users as variables, each profile z-scored over the items; the
    users weighing least on the ``components`` leading principal components are the likeliest attackers,
    so the score is minus that weight."""
    from scipy.sparse.linalg import svds

    dense = user_items.astype(bool).astype(np.float64).toarray()
    dense -= dense.mean(axis=1, keepdims=True)
    dense /= np.maximum(dense.std(axis=1, keepdims=True), 1e-12)
    loadings, _, _ = svds(dense, k=components, random_state=0)
    return -(loadings ** 2).sum(axis=1)


def profile_crowding_scores(user_items: sp.csr_matrix, neighbours: int = 10) -> np.ndarray:
    """The mean cosine similarity of each history to its ``neighbours`` most similar other histories: the
    latent crowding's counterpart in the raw item space (near-copies score near 1)."""
    from sklearn.neighbors import NearestNeighbors

    binary = user_items.astype(bool).astype(np.float32)
    search = NearestNeighbors(n_neighbors=min(neighbours + 1, binary.shape[0]), metric="cosine").fit(binary)
    distances, _ = search.kneighbors(binary)
    return 1.0 - distances[:, 1:].mean(axis=1)


def rank_combination(*scores: np.ndarray) -> np.ndarray:
    """Each user's highest rank (as a share of the users) among several scores, each higher-is-stranger: a
    user flagged by any one of them is flagged."""
    from scipy.stats import rankdata

    return np.max([rankdata(s) / len(s) for s in scores], axis=0)


def detection(scores: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """ROC-AUC of ``scores`` at telling the ``fake`` users apart, and precision among the as many
    top-scored users as there are fakes."""
    from sklearn.metrics import roc_auc_score

    top = np.argsort(-scores, kind="stable")[:int(fake.sum())]
    return {"roc_auc": float(roc_auc_score(fake, scores)), "precision_at_n": float(fake[top].mean())}
