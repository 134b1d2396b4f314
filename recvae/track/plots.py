"""Figures of training runs and benchmarks (matplotlib, imported only when a figure is drawn)."""

from __future__ import annotations

import numpy as np


def training_curves_figure(history: list[dict]):
    """A PNG-ready figure of loss, KL, beta and validation metrics per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    panels = [("loss", "loss"), ("kl", "KL"), ("beta", "β")]
    val_keys = [k for k in history[0] if k.startswith("val_") and not k.endswith("_se")] if history else []
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4 * (len(panels) + 1), 3.2))
    for ax, (key, label) in zip(axes, panels):
        ax.plot(epochs, [r.get(key, float("nan")) for r in history])
        ax.set_title(label)
        ax.set_xlabel("epoch")
    for key in val_keys:
        axes[-1].plot(epochs, [r[key] for r in history], label=key[4:])
    axes[-1].set_title("validation")
    axes[-1].set_xlabel("epoch")
    if val_keys:
        axes[-1].legend()
    fig.tight_layout()
    return fig



def metric_curves_figure(curves_by_model: dict[str, dict[str, np.ndarray]]):
    """Recall@K and NDCG@K against K, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, curves in curves_by_model.items():
        for ax, metric in zip(axes, ("recall", "ndcg")):
            ax.plot(np.arange(1, len(curves[metric]) + 1), curves[metric], label=name)
    for ax, label in zip(axes, ("Recall@K", "NDCG@K")):
        ax.set_title(label)
        ax.set_xlabel("K")
        ax.legend()
    fig.tight_layout()
    return fig


def auto_beta_peak(result: dict) -> dict:
    """The anneal run's curve point (epoch, beta, metric) where auto-β took its β."""
    return next(r for r in result["curve"] if r["epoch"] == result["peak_epoch"])


def auto_beta_figure(curves: dict[str, dict]):
    """Validation score against β of auto-β anneal runs (``AutoBetaResult.to_json()`` by label),
    each run's chosen β marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    metric = None
    for label, result in curves.items():
        metric = result["metric"]
        line, = ax.plot([r["beta"] for r in result["curve"]], [r[metric] for r in result["curve"]], label=label, lw=1)
        peak = auto_beta_peak(result)
        ax.plot([peak["beta"]], [peak[metric]], "o", color=line.get_color())
    ax.set_xlabel("β (annealed linearly from 0 to 1)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("auto-β: chosen β at each run's peak")
    if len(curves) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def diagnostics_figure(history: list[dict]):
    """Posterior diagnostics per epoch: active units and mean posterior variance, and the KL of
    every latent dimension (sorted by its last-epoch KL) as a heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    kl = np.asarray([r["kl_per_dim"] for r in history])
    kl = kl[:, np.argsort(-kl[-1])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(epochs, [r["active_units"] for r in history])
    axes[0].set_ylim(0, kl.shape[1] * 1.05)
    axes[0].set_title(f"active units (of {kl.shape[1]})")
    axes[1].plot(epochs, [r["posterior_variance"] for r in history])
    axes[1].set_title("mean posterior variance")
    image = axes[2].imshow(kl.T, aspect="auto", origin="lower", cmap="viridis",
                           extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, kl.shape[1] - 0.5))
    axes[2].set_title("KL per latent dimension (nats)")
    axes[2].set_ylabel("dimension, by final KL")
    fig.colorbar(image, ax=axes[2])
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig
