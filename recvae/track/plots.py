"""Figures of training runs and benchmarks (matplotlib, imported only when a figure is drawn).

Every figure takes a ``title`` naming what it shows (the dataset, the seed); legends sit outside the
axes so no curve is hidden, and models differ by line style as well as colour."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path

import numpy as np

from recvae.io import write_atomic_bytes

# colour and dash cycle together, so lines that lie on one another stay distinguishable in print too
_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _styles():
    for index in itertools.count():
        yield {"color": f"C{index % 10}", "linestyle": _STYLES[index % len(_STYLES)],
               "marker": _MARKERS[index % len(_MARKERS)]}


def finish_figure(fig, title: str, legend_axis=None) -> None:
    """Title over the panels and, when there is one, the legend to the right of the last panel."""
    if legend_axis is not None and legend_axis.get_legend_handles_labels()[0]:
        legend_axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()


def figure_png(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    pyplot().close(figure)
    return buffer.getvalue()


def write_figures(folder: str | Path, figures: dict) -> list[Path]:
    """Each figure of ``figures`` (file name → figure) as a PNG in ``folder``, each file whole or not at all."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures.items():
        write_atomic_bytes(folder / name, figure_png(figure))
        written.append(folder / name)
    return written


def _has_values(history: list[dict], key: str) -> bool:
    return any(isinstance(r.get(key), (int, float)) and not math.isnan(r[key]) for r in history)


def training_curves_figure(history: list[dict], title: str = ""):
    """Loss, KL and β (those the model records; Mult-DAE has no KL or β) and the validation metrics per epoch."""
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    panels = [(key, label) for key, label in (("loss", "training loss (per user)"), ("kl", "KL (nats per user)"),
                                              ("beta", "β (KL weight)")) if _has_values(history, key)]
    val_keys = [k for k in history[0] if k.startswith("val_") and not k.endswith("_se")] if history else []
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4 * (len(panels) + 1) + 1.2, 3.4), squeeze=False)
    axes = axes[0]
    for ax, (key, label) in zip(axes, panels):
        ax.plot(epochs, [r.get(key, float("nan")) for r in history])
        ax.set_ylabel(label)
    validation = axes[-1]
    for key, style in zip(val_keys, _styles()):
        validation.plot(epochs, [r[key] for r in history], label=key[4:], markevery=max(1, len(epochs) // 8), **style)
    validation.set_ylabel("validation score" if val_keys else "no validation users")
    for ax in axes:
        ax.set_xlabel("epoch")
    finish_figure(fig, title, validation)
    return fig


def metric_curves_figure(curves_by_model: dict[str, dict[str, np.ndarray]], title: str = ""):
    """Recall@K and NDCG@K of the test users against K, one line per model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for (name, curves), style in zip(curves_by_model.items(), _styles()):
        for ax, metric in zip(axes, ("recall", "ndcg")):
            k = np.arange(1, len(curves[metric]) + 1)
            ax.plot(k, curves[metric], label=name, markevery=max(1, len(k) // 10), markersize=4, **style)
    for ax, label in zip(axes, ("Recall@K (hits / min(K, test items))", "NDCG@K")):
        ax.set_xlabel("K (length of the recommendation list)")
        ax.set_ylabel(label)
    finish_figure(fig, title, axes[-1])
    return fig


def auto_beta_peak(result: dict) -> dict:
    """The anneal run's curve point (epoch, beta, metric) where auto-β took its β."""
    return next(r for r in result["curve"] if r["epoch"] == result["peak_epoch"])


def auto_beta_figure(curves: dict[str, dict], title: str = ""):
    """Validation score against β of auto-β anneal runs (``AutoBetaResult.to_json()`` by label),
    each run's chosen β marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    metric = None
    for (label, result), style in zip(curves.items(), _styles()):
        metric = result["metric"]
        peak = auto_beta_peak(result)
        ax.plot([r["beta"] for r in result["curve"]], [r[metric] for r in result["curve"]], lw=1,
                label=f"{label}: β = {peak['beta']:.2f}", color=style["color"], linestyle=style["linestyle"])
        ax.plot([peak["beta"]], [peak[metric]], marker=style["marker"], color=style["color"])
    ax.set_xlabel("β (annealed linearly from 0 to 1)")
    ax.set_ylabel(f"validation {metric}")
    finish_figure(fig, title or "auto-β: the β at each run's peak", ax)
    return fig


def diagnostics_figure(history: list[dict], title: str = ""):
    """Posterior diagnostics per epoch: active units and mean posterior variance, and the KL of
    every latent dimension (sorted by its last-epoch KL) as a heat map."""
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    kl = np.asarray([r["kl_per_dim"] for r in history])
    kl = kl[:, np.argsort(-kl[-1])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["active_units"] for r in history])
    axes[0].set_ylim(0, kl.shape[1] * 1.05)
    axes[0].set_ylabel(f"active units (of {kl.shape[1]})")
    axes[1].plot(epochs, [r["posterior_variance"] for r in history])
    axes[1].set_ylabel("mean posterior variance")
    image = axes[2].imshow(kl.T, aspect="auto", origin="lower", cmap="viridis",
                           extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, kl.shape[1] - 0.5))
    axes[2].set_ylabel("latent dimension, by final KL")
    fig.colorbar(image, ax=axes[2], label="KL (nats)")
    for ax in axes:
        ax.set_xlabel("epoch")
    finish_figure(fig, title)
    return fig


def _trial_values(trials: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A study's trials as (each one's score, its last reported one where pruned; which completed; the best
    completed score so far)."""
    values = np.array([t[key] if t.get(key) is not None else t.get("last", np.nan) for t in trials], dtype=float)
    complete = np.array([t.get("state") == "complete" for t in trials])
    return values, complete, np.fmax.accumulate(np.where(complete, values, np.nan))


def search_budget_figure(trials_by_model: dict[str, list[dict]], metric: str, title: str = ""):
    """Each model's study on one figure: the best validation score so far against trials spent and against
    seconds spent (the trials' own training time, pruned ones included), so equal budgets can be seen to be."""
    plt = pyplot()
    fig, (by_trial, by_time) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    key = f"val_{metric}"
    for (name, trials), style in zip(trials_by_model.items(), _styles()):
        _, _, best = _trial_values(trials, key)
        seconds = np.cumsum([t.get("seconds", 0.0) or 0.0 for t in trials])
        by_trial.step(np.arange(1, len(trials) + 1), best, where="post", label=name, **style)
        by_time.step(seconds, best, where="post", label=name, **style)
    from matplotlib.ticker import MaxNLocator, NullFormatter

    by_trial.set_xlabel("trials spent")
    by_trial.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_time.set_xlabel("seconds of training spent")
    by_time.set_xscale("log")
    by_time.xaxis.set_minor_formatter(NullFormatter())
    by_trial.set_ylabel(f"best validation {metric} so far")
    finish_figure(fig, title, by_time)
    return fig


def search_figure(trials_by_label: dict[str, list[dict]], metric: str, title: str = ""):
    """Each study's trials (benchmark tuning records: params, ``val_<metric>``, state) against the trial
    number, and the best score so far as a line; pruned trials as crosses at their last reported score."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    key = f"val_{metric}"
    for (label, trials), style in zip(trials_by_label.items(), _styles()):
        numbers = np.arange(1, len(trials) + 1)
        values, complete, best = _trial_values(trials, key)
        ax.plot(numbers, best, label=f"{label}: best so far", color=style["color"], linestyle=style["linestyle"])
        ax.plot(numbers[complete], values[complete], "o", color=style["color"], markersize=4, alpha=0.6)
        if (~complete).any():
            ax.plot(numbers[~complete], values[~complete], "x", color=style["color"], markersize=5, alpha=0.6,
                    label=f"{label}: pruned")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    finish_figure(fig, title, ax)
    return fig
