"""Numbers about a latent space, as pure functions of encodings and vectors: how much each dimension carries,
which are active, 2-D projections, traversals, and whether neighbours and attributes show in the space."""

from __future__ import annotations

import warnings

import numpy as np

from recvae.models.latent import Encoding

ACTIVE_VARIANCE = 0.01  # Burda et al. (2016): a dimension is active when its posterior mean varies this much


def kl_per_dimension(encoding: Encoding) -> np.ndarray | None:
    """Mean over users of KL(N(mean, std²) ‖ N(0, 1)) per dimension, in nats; None for a code without a std."""
    if encoding.std is None:
        return None
    mean, variance = encoding.mean.astype(np.float64), encoding.std.astype(np.float64) ** 2
    return (0.5 * (mean**2 + variance - 1.0 - np.log(variance))).mean(axis=0)


def active_units(encoding: Encoding) -> np.ndarray:
    """Per dimension, whether the variance over users of its posterior mean exceeds ``ACTIVE_VARIANCE``."""
    return encoding.mean.astype(np.float64).var(axis=0) > ACTIVE_VARIANCE


def collapse_verdict(active: np.ndarray) -> str:
    """A plain sentence on posterior collapse from the active-unit mask."""
    n, total = int(active.sum()), len(active)
    if n == 0:
        return f"collapsed: none of the {total} dimensions is active; every user has the same code"
    if n < 0.1 * total:
        return (f"mostly collapsed: {n} of {total} dimensions are active, the others carry nothing about the user "
                "(a smaller β, fewer dimensions or free bits would use them)")
    if n < 0.5 * total:
        return f"partly collapsed: {n} of {total} dimensions are active; the rest follow the prior"
    return f"not collapsed: {n} of {total} dimensions are active"


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows projected on their two principal axes, and the share of the variance each axis explains."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / max(float((singular**2).sum()), 1e-300)
    return centred @ axes[:2].T, explained[:2]


def aggregate_std(encoding: Encoding) -> np.ndarray:
    """Per dimension, the standard deviation of the aggregate posterior (the mixture of the users'
    posteriors): the variance of the means plus the mean of the variances."""
    variance = encoding.mean.astype(np.float64).var(axis=0)
    if encoding.std is not None:
        variance = variance + (encoding.std.astype(np.float64) ** 2).mean(axis=0)
    return np.sqrt(variance)


def traversal(model, encoding: Encoding, dimension: int, steps=(-2.0, -1.0, 0.0, 1.0, 2.0),
              conditions: np.ndarray | None = None) -> np.ndarray:
    """Scores (steps x items) decoded from the mean position moved along ``dimension`` by ``steps`` standard
    deviations of the aggregate posterior, the other dimensions held at the mean; a CVAE's with the side
    features ``conditions`` (one row: the placed users' mean), its feature columns left out."""
    centre = encoding.mean.astype(np.float64).mean(axis=0)
    points = np.repeat(centre[None, :], len(steps), axis=0)
    points[:, dimension] += np.asarray(steps) * aggregate_std(encoding)[dimension]
    rows = None if conditions is None else np.repeat(np.asarray(conditions, np.float32).reshape(1, -1), len(steps), 0)
    scores = model.decode(points.astype(np.float32), rows)
    return scores[:, : model._item_columns(scores.shape[1])]


def rising_and_falling(scores: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From a traversal's scores: each item's change in log-softmax from the first step to the last, and the
    ``k`` items that rise most and fall most (indices, largest change first)."""
    log_softmax = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    change = log_softmax[-1] - log_softmax[0]
    order = np.argsort(change)
    return change, order[::-1][:k], order[:k]


def neighbour_genre_share(vectors: np.ndarray, genres: list[set], k: int = 10, seed: int = 0) -> dict:
    """For items with genres: the mean fraction of each item's ``k`` nearest items (cosine) sharing a genre
    with it, and the same for ``k`` random items (what chance gives)."""
    with_genres = np.flatnonzero([bool(g) for g in genres])
    unit = vectors[with_genres].astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
    rng = np.random.default_rng(seed)
    shares, chance = [], []
    for row, item in enumerate(with_genres):
        own = genres[item]
        shares.append(np.mean([bool(own & genres[with_genres[j]]) for j in nearest[row]]))
        others = rng.choice(len(with_genres) - 1, size=k, replace=False)
        others = others + (others >= row)  # skip the item itself
        chance.append(np.mean([bool(own & genres[with_genres[j]]) for j in others]))
    return {"items": int(len(with_genres)), "k": k, "share": float(np.mean(shares)), "random": float(np.mean(chance))}


def linear_probe(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated accuracy of a logistic regression predicting ``labels`` from ``features`` (standardised),
    beside the majority class's accuracy: does the attribute show, linearly, in the space?"""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    folds = int(min(folds, counts.min()))
    # an L2 penalty of C = 0.1 on standardised features: the probe converges in a few hundred steps
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300, tol=1e-3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        scores = cross_val_score(probe, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return {"accuracy": float(scores.mean()), "accuracy_se": float(scores.std(ddof=1) / np.sqrt(folds)),
            "majority": float(counts.max() / counts.sum()), "classes": int(len(classes)), "users": int(len(labels)),
            "folds": folds, "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}
