"""The latent report: what a model's latent space holds, in figures (PNG), one self-contained ``report.html``
and ``report.json`` with every number shown."""

from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recvae.data.side import aligned, item_genres, item_names
from recvae.data.vocab import Vocabulary
from recvae.errors import DataError, whole_at_least
from recvae.io import write_atomic_bytes
from recvae.latent import stats
from recvae.latent.figures import dimensions_figure, map_figure, traversals_figure
from recvae.models.inputs import as_csr
from recvae.models.latent import NoLatentSpaceError
from recvae.track.plots import write_figures

log = logging.getLogger(__name__)

_MAX_ATTRIBUTE_VALUES = 30  # a user feature with more distinct values (a zip code) is not an attribute to colour by
_MAX_PROBED_VALUES = 10  # the linear probes ask about attributes of a few values (gender, age band), not occupation's 21


@dataclass(frozen=True)
class SideData:
    """What the report knows beside the interactions, each indexed by the log's IDs as read (text):
    ``user_features`` (columns of attributes), ``item_features`` (a title or name column, a genres column
    with "|"-separated genres)."""

    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None


@dataclass(frozen=True)
class Comparison:
    """Another model's vectors for the same users and items (ALS's factors, say): the probes run on them too."""

    name: str
    user_vectors: np.ndarray
    item_vectors: np.ndarray


@dataclass
class _Figures:
    files: dict = field(default_factory=dict)  # file name -> matplotlib figure
    captions: dict = field(default_factory=dict)


def latent_report(model, user_items: sp.csr_matrix, users: Vocabulary, out: str | Path, side: SideData = SideData(),
                  title: str = "", max_users: int = 20_000, seed: int = 0, comparisons: tuple[Comparison, ...] = (),
                  umap: bool = False) -> dict:
    """Write the report of ``model``'s latent space over the histories ``user_items`` (rows: ``users``) to the
    folder ``out`` and return its numbers (what ``report.json`` holds). Up to ``max_users`` users, drawn with
    ``seed``, are placed; a model without a latent space is refused before anything is written. ``umap``: a
    UMAP map of the users beside the PCA one (umap-learn, the ``latent`` extra; about a minute for 6,000 users)."""
    user_items = as_csr(user_items)  # a CVAE's columns hold its conditions beside the items: encode checks the width
    if user_items.shape[0] != len(users):
        raise DataError(f"user_items has {user_items.shape[0]} rows, and users names {len(users)}: a row per user")
    whole_at_least(1, max_users=max_users)
    rows = np.flatnonzero(np.diff(user_items.indptr) > 0)
    if not len(rows):
        raise DataError("no row of user_items holds an item: there is no user to place")
    if len(rows) > max_users:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_users, replace=False))
    encoding = model.encode(user_items[rows])
    title = title or model.name
    numbers: dict = {"model": model.name, "title": title, "users": int(len(rows)), "dimensions": int(encoding.mean.shape[1])}
    figures = _Figures()
    _dimensions(encoding, numbers, figures, title)
    lengths = np.diff(user_items[rows].indptr)
    user_attributes = _attributes(side.user_features, users.subset(rows))
    _user_map(encoding, lengths, user_attributes, numbers, figures, title)
    if umap:
        _user_umap(encoding, lengths, user_attributes, numbers, figures, title, seed)
    _user_probes(encoding, user_attributes, rows, comparisons, numbers)
    names, genres = _item_side(side.item_features, model.catalogue())
    _item_space(model, names, genres, comparisons, numbers, figures, title, seed)
    width = getattr(model.config, "conditions", 0)  # a CVAE's traversals hold the users' mean features
    mean_features = np.asarray(user_items[rows][:, -width:].mean(axis=0)).ravel() if width else None
    _traversals(model, encoding, names, numbers, figures, title, mean_features)
    out = Path(out)
    paths = write_figures(out, figures.files)
    write_atomic_bytes(out / "report.json", (json.dumps(numbers, indent=2) + "\n").encode())
    write_atomic_bytes(out / "report.html", _html(numbers, paths, figures.captions).encode())
    log.info("latent report of %s written to %s", model.name, out)
    return numbers


def _dimensions(encoding, numbers: dict, figures: _Figures, title: str) -> None:
    kl = stats.kl_per_dimension(encoding)
    active = stats.active_units(encoding)
    variance = encoding.mean.astype(np.float64).var(axis=0)
    numbers.update(kl_per_dimension=None if kl is None else kl.round(5).tolist(), kl_total=None if kl is None else float(kl.sum()),
                   variance_of_mean=variance.round(6).tolist(), active_units=int(active.sum()),
                   active_threshold=stats.ACTIVE_VARIANCE, verdict=stats.collapse_verdict(active))
    figures.files["dimensions.png"] = dimensions_figure(kl, variance, active, f"{title}: what each dimension carries")
    figures.captions["dimensions.png"] = ("KL divergence to the prior per latent dimension, sorted (for a code without "
                                          "a std, the variance of its mean); active dimensions in blue.")


def _attributes(features: pd.DataFrame | None, users: Vocabulary) -> dict[str, np.ndarray]:
    """The user features with few enough values to colour and to probe, aligned to ``users`` (None: no row)."""
    if features is None:
        return {}
    kept = {}
    for column in features.columns:
        if features[column].nunique() <= _MAX_ATTRIBUTE_VALUES:
            kept[column] = aligned(features[column].astype(object), users, f"user features ({column})", missing=None)
    return kept


def _user_map(encoding, lengths, attributes: dict, numbers: dict, figures: _Figures, title: str) -> None:
    points, explained = stats.pca_2d(encoding.mean)
    shown = {name: np.where(values == None, "unknown", values) for name, values in list(attributes.items())[:3]}  # noqa: E711
    numbers["user_map"] = {"method": "PCA of the posterior means", "explained_variance": explained.round(4).tolist()}
    figures.files["users.png"] = map_figure(points, explained, ("history length", lengths), shown,
                                            f"{title}: users' posterior means")
    figures.captions["users.png"] = "Users' posterior means on their two principal axes, coloured by history length and by attribute."


def _user_umap(encoding, lengths, attributes: dict, numbers: dict, figures: _Figures, title: str, seed: int) -> None:
    try:
        import umap
    except ImportError:
        raise DataError("a UMAP map needs umap-learn: pip install 'recvae[latent]'") from None
    log.info("drawing the UMAP map of %d users (umap-learn is installed)", len(encoding))
    points = umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(encoding.mean)
    shown = {name: np.where(values == None, "unknown", values) for name, values in list(attributes.items())[:3]}  # noqa: E711
    numbers["user_map_umap"] = {"method": "UMAP of the posterior means (umap-learn, 15 neighbours)"}
    figures.files["users_umap.png"] = map_figure(points, None, ("history length", lengths), shown,
                                                 f"{title}: users' posterior means, UMAP")
    figures.captions["users_umap.png"] = "The same users on a UMAP map, which keeps neighbourhoods rather than variance."


def _user_probes(encoding, attributes: dict, rows, comparisons, numbers: dict) -> None:
    probes = {}
    for name, values in attributes.items():
        known = values != None  # noqa: E711
        labels = values[known].astype(str)
        if not 2 <= len(np.unique(labels)) <= _MAX_PROBED_VALUES:
            continue
        probes[name] = {"posterior mean": stats.linear_probe(encoding.mean[known], labels)}
        for other in comparisons:
            probes[name][other.name] = stats.linear_probe(other.user_vectors[rows][known], labels)
    numbers["attribute_probes"] = probes


def _item_side(features: pd.DataFrame | None, items: Vocabulary) -> tuple[np.ndarray, list[set]]:
    ids = np.asarray([str(i) for i in items.ids], dtype=object)
    if features is None:
        return ids, item_genres(None, items)
    names = aligned(item_names(features).astype(object), items, "item features", missing=None)
    return np.where(names == None, ids, names), item_genres(features, items)  # noqa: E711


def _item_space(model, names, genres, comparisons, numbers: dict, figures: _Figures, title: str, seed: int) -> None:
    vectors = model.item_embeddings()["output"]
    points, explained = stats.pca_2d(vectors)
    genres = genres[: len(vectors)]  # the items come first; a CVAE's feature columns after them have no vector
    popularity = model.item_popularity_.cpu().numpy()[: len(vectors)]
    first_genre = {"genre": np.array([sorted(g)[0] if g else "none" for g in genres], dtype=object)} if any(genres) else {}
    figures.files["items.png"] = map_figure(points, explained, ("popularity", popularity + 1), first_genre,
                                            f"{title}: item output vectors")
    figures.captions["items.png"] = "Items' output vectors on their two principal axes, by popularity and by (first) genre."
    numbers["item_map"] = {"method": "PCA of the output vectors", "explained_variance": explained.round(4).tolist()}
    if any(genres):
        sample = np.random.default_rng(seed).permutation(len(genres))[:5000]  # the similarity matrix is items²
        shares = {"output vectors": stats.neighbour_genre_share(vectors[sample], [genres[i] for i in sample], seed=seed)}
        for other in comparisons:
            shares[other.name] = stats.neighbour_genre_share(other.item_vectors[sample], [genres[i] for i in sample], seed=seed)
        numbers["genre_neighbourhoods"] = shares


def _traversals(model, encoding, names, numbers: dict, figures: _Figures, title: str, conditions=None,
                dimensions: int = 4) -> None:
    kl = stats.kl_per_dimension(encoding)
    informative = np.argsort(kl if kl is not None else encoding.mean.var(axis=0))[::-1][:dimensions]
    moves = []
    try:
        for dimension in informative:
            change, rising, falling = stats.rising_and_falling(stats.traversal(model, encoding, int(dimension),
                                                                               conditions=conditions))
            moves.append({"dimension": int(dimension), "kl": None if kl is None else float(kl[dimension]),
                          "rising": rising.tolist(), "rising_names": [str(names[i]) for i in rising],
                          "rising_change": change[rising].round(4).tolist(), "falling": falling.tolist(),
                          "falling_names": [str(names[i]) for i in falling], "falling_change": change[falling].round(4).tolist()})
    except NoLatentSpaceError as why:  # VASP's item-item path: a position alone does not decode to its scores
        numbers["traversals"] = {"skipped": str(why)}
        return
    numbers["traversals"] = moves
    figures.files["traversals.png"] = traversals_figure(moves, f"{title}: moving along the most informative dimensions")
    figures.captions["traversals.png"] = ("For the dimensions with the most KL: the items whose probability rises (green) "
                                          "and falls (red) most as the mean user moves from -2 to +2 aggregate standard "
                                          "deviations along the dimension.")


def _html(numbers: dict, paths: list[Path], captions: dict) -> str:
    """One page, opening offline: the numbers as tables, the figures embedded."""
    def table(rows):
        cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table>{cells}</table>"

    parts = [f"<h1>Latent space of {html.escape(numbers['title'])}</h1>",
             f"<p><b>{html.escape(numbers['verdict'])}</b></p>",
             table([("users placed", numbers["users"]), ("dimensions", numbers["dimensions"]),
                    ("active units (variance of the mean > 0.01)", numbers["active_units"]),
                    ("total KL (nats per user)", numbers["kl_total"])])]
    probes = [(f"{attribute}: {name}", f"{p['accuracy']:.3f} ± {p['accuracy_se']:.3f} (majority {p['majority']:.3f})")
              for attribute, by in numbers.get("attribute_probes", {}).items() for name, p in by.items()]
    if probes:
        parts += ["<h2>Do users' attributes show? Linear probe accuracy (cross-validated)</h2>", table(probes)]
    shares = [(name, f"{s['share']:.3f} (random neighbours {s['random']:.3f})")
              for name, s in numbers.get("genre_neighbourhoods", {}).items()]
    if shares:
        parts += ["<h2>Do neighbours share a genre? Fraction of the 10 nearest items sharing one</h2>", table(shares)]
    for path in paths:
        encoded = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{encoded}' style='max-width:100%'>"
                     f"<figcaption>{html.escape(captions.get(path.name, ''))}</figcaption></figure>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}th,td{padding:2px 8px;text-align:left}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(numbers['title'])}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
