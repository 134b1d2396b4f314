"""The latent report's figures: every axis labelled, legends beside the panels, titles naming model and data."""

from __future__ import annotations

import numpy as np

from recvae.track.plots import finish_figure, pyplot

_MAX_CATEGORIES = 8  # beyond this many values an attribute's map keeps the most frequent, the rest "other"


def dimensions_figure(kl: np.ndarray | None, variance: np.ndarray, active: np.ndarray, title: str):
    """KL per dimension (sorted; or, for a code without a std, the variance of its mean), active ones marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    values = kl if kl is not None else variance
    order = np.argsort(values)[::-1]
    colours = np.where(active[order], "C0", "C7")
    ax.bar(np.arange(len(values)), values[order], color=colours, width=1.0)
    ax.set_xlabel("latent dimension, sorted")
    ax.set_ylabel("KL to the prior (nats per user)" if kl is not None else "variance of the mean over users")
    ax.bar([], [], color="C0", label=f"active ({int(active.sum())})")
    ax.bar([], [], color="C7", label=f"inactive ({int((~active).sum())})")
    finish_figure(fig, title, ax)
    return fig


def _categorical(ax, points: np.ndarray, labels: np.ndarray, what: str) -> None:
    values, counts = np.unique(labels.astype(str), return_counts=True)
    kept = set(values[np.argsort(counts)[::-1][:_MAX_CATEGORIES]])
    shown = np.where(np.isin(labels.astype(str), list(kept)), labels.astype(str), "other")
    for index, value in enumerate(sorted(set(shown), key=lambda v: (v == "other", v))):
        mask = shown == value
        ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.5, color=f"C{index % 10}", label=value)
    ax.set_title(what, fontsize="medium")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="x-small", markerscale=3, frameon=False)


def map_figure(points: np.ndarray, explained: np.ndarray | None, continuous: tuple[str, np.ndarray],
               categorical: dict[str, np.ndarray], title: str):
    """A 2-D map: one panel coloured by a number (log scale), one per categorical attribute. ``explained``:
    the principal axes' shares of the variance (PCA), or None for a UMAP map."""
    plt = pyplot()
    panels = 1 + len(categorical)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels + 1.2, 4.2), squeeze=False)
    axes = axes[0]
    name, values = continuous
    shown = axes[0].scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, c=np.log10(np.maximum(values, 1)),
                            cmap="viridis")
    fig.colorbar(shown, ax=axes[0], label=f"log10 {name}")
    axes[0].set_title(f"by {name}", fontsize="medium")
    for ax, (what, labels) in zip(axes[1:], categorical.items()):
        _categorical(ax, points, labels, f"by {what}")
    for ax in axes:
        ax.set_xlabel("UMAP 1" if explained is None else f"principal axis 1 ({explained[0]:.0%} of the variance)")
        ax.set_ylabel("UMAP 2" if explained is None else f"principal axis 2 ({explained[1]:.0%})")
    finish_figure(fig, title)
    return fig


def traversals_figure(moves: list[dict], title: str):
    """Per dimension, the items whose log-probability rises and falls most from -2 to +2 aggregate standard
    deviations along it."""
    plt = pyplot()
    fig, axes = plt.subplots(len(moves), 1, figsize=(9, 2.6 * len(moves)), squeeze=False)
    for ax, move in zip(axes[:, 0], moves):
        labels = [str(n)[:48] for n in move["falling_names"]][::-1] + [str(n)[:48] for n in move["rising_names"]][::-1]
        values = list(move["falling_change"])[::-1] + list(move["rising_change"])[::-1]
        ax.barh(np.arange(len(values)), values, color=["C3" if v < 0 else "C2" for v in values])
        ax.set_yticks(np.arange(len(values)), labels, fontsize="x-small")
        ax.axvline(0.0, color="k", linewidth=0.6)
        ax.set_xlabel("change in log-probability, from -2 to +2 std along the dimension")
        ax.set_title(f"dimension {move['dimension']} (KL {move['kl']:.2f} nats)" if move.get("kl") is not None
                     else f"dimension {move['dimension']}", fontsize="medium")
    finish_figure(fig, title)
    return fig
