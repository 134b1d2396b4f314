"""The realism report: synthetic logs set against the real training log they imitate, in numbers
(``report.json``) and labelled figures. Every log is measured the same way, baselines included."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import scipy.sparse as sp

from recvae.evaluate import evaluate
from recvae.generative.realism import (gini, genre_shares, history_lengths, item_counts, jensen_shannon,
                                       length_divergence, nearest_jaccard, pmi_correlation)
from recvae.errors import DataError, positive
from recvae.io import write_atomic_json
from recvae.models import EASE
from recvae.models.inputs import as_csr
from recvae.split import HeldOut

log = logging.getLogger(__name__)
TSTR_METRIC = "ndcg@100"


def realism_report(logs: dict[str, sp.csr_matrix], train: sp.csr_matrix, test: HeldOut, out: str | Path,
                   genres: list[set] | None = None, l2: float = 500.0, title: str = "") -> dict:
    """Measure each synthetic log of ``logs`` (name -> users x items, the real log's item columns) against
    the real training log ``train``: item popularity (Jensen-Shannon divergence of the item shares, Gini),
    history lengths, co-occurrence (PMI correlation), the genre mix per user (with ``genres``), train on
    synthetic / test on real (EASE with ``l2`` fitted on the log and scored on the real held-out users
    ``test``, as a ratio of EASE fitted on ``train``), and memorisation (each synthetic user's highest
    Jaccard similarity to a training user, beside the same for the real held-out users). Writes report.json
    and figures under ``out``; returns the numbers."""
    positive(l2=l2)
    logs, train = _checked_logs(logs, train, test, genres)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real_score = evaluate(EASE(l2=l2).fit(train), test, (TSTR_METRIC,)).mean(TSTR_METRIC)
    heldout = (test.fold_in + test.target).tocsr()
    real_copying = nearest_jaccard(heldout, train)
    numbers = {"real": {"users": int(train.shape[0]), "interactions": int(train.nnz),
                        "item_gini": gini(item_counts(train)), "tstr_" + TSTR_METRIC: real_score,
                        "nearest_jaccard_heldout_mean": float(real_copying.mean()),
                        "nearest_jaccard_heldout_p99": float(np.quantile(real_copying, 0.99))},
               "tstr": {"model": "EASE", "l2": l2, "metric": TSTR_METRIC}, "logs": {}}
    curves = {}
    real_genres = genre_shares(train, genres) if genres is not None and any(genres) else None
    for name, synthetic in logs.items():
        log.info("realism: measuring %s (%d users)", name, synthetic.shape[0])
        pmi = pmi_correlation(train, synthetic)
        copying = nearest_jaccard(synthetic, train)
        score = evaluate(EASE(l2=l2).fit(synthetic), test, (TSTR_METRIC,)).mean(TSTR_METRIC)
        entry = {"users": int(synthetic.shape[0]), "interactions": int(synthetic.nnz),
                 "item_share_jsd": jensen_shannon(item_counts(train) + 1e-12, item_counts(synthetic) + 1e-12),
                 "item_gini": gini(item_counts(synthetic)), "length_jsd": length_divergence(train, synthetic),
                 "pmi_correlation": pmi["pmi_correlation"], "pmi_pairs": pmi["pairs"],
                 "tstr_" + TSTR_METRIC: score, "tstr_ratio": score / real_score,
                 "nearest_jaccard_mean": float(copying.mean()), "nearest_jaccard_p99": float(np.quantile(copying, 0.99)),
                 "copies": int((copying >= 0.999).sum())}
        if real_genres is not None:
            names, shares = genre_shares(synthetic, genres)
            entry["genre_mix_jsd"] = jensen_shannon(real_genres[1].mean(axis=0), shares.mean(axis=0))
            curves.setdefault("genres", {})[name] = shares.mean(axis=0)
        numbers["logs"][name] = entry
        curves.setdefault("pmi", {})[name] = (pmi["real_pmi"], pmi["synthetic_pmi"])
        curves.setdefault("copying", {})[name] = copying
        curves.setdefault("counts", {})[name] = item_counts(synthetic)
        curves.setdefault("lengths", {})[name] = history_lengths(synthetic)
    _figures(numbers, curves, train, real_copying, real_genres, out, title)
    write_atomic_json(out / "report.json", numbers)
    return numbers


def _checked_logs(logs, train, test: HeldOut, genres) -> tuple[dict[str, sp.csr_matrix], sp.csr_matrix]:
    """The logs as CSR matrices over the real log's items, refused before anything is measured or written."""
    if not isinstance(logs, Mapping) or not logs:
        raise DataError(f"logs must map a name to each synthetic log (users x items), got {type(logs).__name__} "
                        f"{'without a log' if isinstance(logs, Mapping) else ''}".rstrip())
    train = as_csr(train, what="train")
    if not isinstance(test, HeldOut):
        raise TypeError(f"test must be a HeldOut (a split's test users), not {type(test).__name__}")
    if test.fold_in.shape[1] != train.shape[1]:
        raise DataError(f"the held-out users' items have {test.fold_in.shape[1]} columns, the real log's {train.shape[1]}")
    if genres is not None and len(genres) != train.shape[1]:
        raise DataError(f"genres has {len(genres)} entries for {train.shape[1]} items: one set of genres per item")
    checked = {}
    for name, log in logs.items():
        checked[name] = matrix = as_csr(log, what=f"the synthetic log {name!r}")
        if matrix.shape[1] != train.shape[1] or not matrix.nnz:
            raise DataError(f"the synthetic log {name!r} has {matrix.shape[1]} item columns and {matrix.nnz} "
                            f"interactions; it needs the real log's {train.shape[1]} item columns and an interaction")
    return checked, train


def _figures(numbers, curves, train, real_copying, real_genres, out: Path, title: str) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(numbers["logs"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, counts in [("real", item_counts(train)), *curves["counts"].items()]:
        axes[0].loglog(np.arange(1, len(counts) + 1), np.sort(counts)[::-1] / counts.sum(), label=label)
    axes[0].set(xlabel="item rank by popularity", ylabel="share of the interactions", title="Item popularity")
    for label, lengths in [("real", history_lengths(train)), *curves["lengths"].items()]:
        axes[1].hist(lengths, bins=np.geomspace(1, max(lengths.max(), 2) + 1, 40), histtype="step", density=True, label=label)
    axes[1].set(xscale="log", xlabel="items per user", ylabel="density", title="History lengths")
    axes[0].legend(fontsize=8)
    _save(fig, out / "popularity_and_lengths.png", title)

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        x, y = curves["pmi"][name]
        ax.scatter(x, y, s=3, alpha=0.4)
        ax.plot([x.min(), x.max()], [x.min(), x.max()], color="grey", lw=0.8)
        ax.set(xlabel="PMI in the real log", ylabel=f"PMI in {name}",
               title=f"{name}: r = {numbers['logs'][name]['pmi_correlation']:.2f}")
    _save(fig, out / "pmi.png", title + " — co-occurrence of the most frequent item pairs")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(0, 1, 51)
    ax.hist(real_copying, bins=bins, histtype="step", density=True, color="black", label="real held-out users")
    for name in names:
        ax.hist(curves["copying"][name], bins=bins, histtype="step", density=True, label=name)
    ax.set(xlabel="Jaccard similarity to the nearest training user", ylabel="density", title="Memorisation")
    ax.legend(fontsize=8)
    _save(fig, out / "memorisation.png", title)

    if real_genres is not None:
        genres, real = real_genres[0], real_genres[1].mean(axis=0)
        fig, ax = plt.subplots(figsize=(12, 4.5))
        width = 0.8 / (len(names) + 1)
        x = np.arange(len(genres))
        ax.bar(x, real, width, label="real", color="black")
        for i, name in enumerate(names, 1):
            ax.bar(x + i * width, curves["genres"][name], width, label=name)
        ax.set_xticks(x + 0.4, genres, rotation=60, ha="right", fontsize=8)
        ax.set(ylabel="mean share of a user's items", title="Genre mix per user")
        ax.legend(fontsize=8)
        _save(fig, out / "genres.png", title)


def _save(fig, path: Path, title: str) -> None:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt
    plt.close(fig)
