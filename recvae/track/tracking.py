"""MLflow runs for recvae: params from configs, metrics per epoch, final metrics with their
standard errors, tags that identify the data and code, artifacts and the model as pyfunc.

MLflow is imported only when tracking is on, so the rest of recvae starts fast without it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recvae.errors import RecvaeError

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"


class TrackingError(RecvaeError):
    """The tracking store cannot be reached or written."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs go. The default is a SQLite database ``mlflow.db`` and artifacts under
    ``mlruns/`` in the working directory; ``MLFLOW_TRACKING_URI`` or ``tracking_uri``
    points elsewhere (e.g. ``http://host:5000``)."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "recvae"

    def resolved_uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return out


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment_tags() -> dict[str, str]:
    import numpy
    import scipy
    import torch

    from recvae import __version__

    return {
        "recvae.version": __version__,
        "recvae.git_commit": _git_commit(),
        "versions.python": platform.python_version(),
        "versions.torch": torch.__version__,
        "versions.numpy": numpy.__version__,
        "versions.scipy": scipy.__version__,
        "machine.cpu_count": str(os.cpu_count()),
        "machine.torch_threads": str(torch.get_num_threads()),
    }


def _check_reachable(uri: str) -> None:
    """Fail before any training when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
            if response.status >= 400:
                raise TrackingError(f"MLflow tracking server {uri} answered {response.status} to /health")
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({getattr(exc, 'reason', exc)}); start it, fix "
            "--tracking-uri / MLFLOW_TRACKING_URI, or pass --no-tracking"
        ) from None


class Tracker:
    """One MLflow run (or a child of the active one), used as a context manager."""

    def __init__(self, config: TrackingConfig, run_name: str, nested: bool = False):
        try:
            import mlflow
        except ImportError:
            raise TrackingError("MLflow is not installed: pip install mlflow, or pass --no-tracking") from None
        self.mlflow = mlflow
        self.config = config
        self.run_name = run_name
        self.nested = nested
        self.run = None

    def __enter__(self) -> Tracker:
        mlflow = self.mlflow
        if not self.nested:
            uri = self.config.resolved_uri()
            _check_reachable(uri)
            mlflow.set_tracking_uri(uri)
            try:
                mlflow.set_experiment(self.config.experiment)
            except Exception as exc:  # the store's own errors differ by backend
                raise TrackingError(f"cannot use MLflow experiment {self.config.experiment!r} at {uri} ({exc})") from None
        self.run = mlflow.start_run(run_name=self.run_name, nested=self.nested)
        mlflow.set_tags(environment_tags())
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.mlflow.end_run(status="FINISHED" if exc_type is None else ("KILLED" if exc_type is KeyboardInterrupt else "FAILED"))

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def child(self, run_name: str) -> Tracker:
        return Tracker(self.config, run_name, nested=True)

    def log_params(self, params: dict) -> None:
        flat = _flatten("", params, {})
        # MLflow refuses values longer than its limit; params are for comparing runs, not storage.
        self.mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})

    def set_tags(self, tags: dict) -> None:
        self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_epoch(self, record: dict) -> None:
        """An epoch callback for ``fit``: every numeric field of the record at step = epoch."""
        metrics = {k: float(v) for k, v in record.items() if k != "epoch" and isinstance(v, (int, float))}
        self.mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metrics.items()}, step=int(record["epoch"]))

    def log_metrics(self, metrics: dict, prefix: str = "") -> None:
        self.mlflow.log_metrics({f"{prefix}{k}".replace("@", "_at_"): float(v) for k, v in metrics.items()})

    def log_dict(self, payload: dict, name: str) -> None:
        self.mlflow.log_dict(payload, name)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.mlflow.log_artifacts(str(path), folder)
        else:
            self.mlflow.log_artifact(str(path), folder)

    def log_figure(self, figure, name: str) -> None:
        self.mlflow.log_figure(figure, name)

    def log_model(self, model_dir: str | Path, name: str = "model") -> str:
        """Log a saved recvae model directory as an MLflow pyfunc model; returns its URI."""
        code = Path(__file__).with_name("pyfunc.py")
        kwargs = dict(python_model=str(code), artifacts={"recvae_model": str(model_dir)})
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # IDs may be integers or strings, so no fixed signature is declared; MLflow warns about that.
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        pyfunc_log.setLevel(logging.ERROR)
        try:
            info = self.mlflow.pyfunc.log_model(name=name, **kwargs)
        except TypeError:  # MLflow before 3 names the model by artifact_path
            info = self.mlflow.pyfunc.log_model(artifact_path=name, **kwargs)
        finally:
            pyfunc_log.setLevel(level)
        # MLflow 3 keeps logged models apart from run artifacts; the tag says where.
        self.mlflow.set_tag("recvae.model_uri", info.model_uri)
        return info.model_uri


class NullTracker:
    """Tracking turned off: the same calls, doing nothing."""

    run_id = None

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def child(self, run_name: str) -> NullTracker:
        return self

    def __getattr__(self, name):
        if name.startswith("log_") or name == "set_tags":
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def start_tracking(config: TrackingConfig, run_name: str) -> Tracker | NullTracker:
    return Tracker(config, run_name) if config.enabled else NullTracker()


def log_beta_diagnostics(tracker, history: list[dict], chosen_beta: dict | None = None) -> None:
    """The per-dimension KL of every epoch and, for auto-β, the chosen β and its curve, as MLflow
    artifacts (the scalar diagnostics are already per-epoch metrics)."""
    if history and "kl_per_dim" in history[0]:
        tracker.log_dict({"kl_per_dim": [r["kl_per_dim"] for r in history]}, "kl_per_dim.json")
        if tracker.run_id:  # matplotlib only when a run records it
            tracker.log_figure(diagnostics_figure(history), "plots/posterior_diagnostics.png")
    if chosen_beta:
        tracker.log_metrics({"auto_beta": chosen_beta["beta"]})
        tracker.log_dict(chosen_beta, "auto_beta.json")
        if tracker.run_id:
            tracker.log_figure(auto_beta_figure({"anneal run": chosen_beta}), "plots/auto_beta.png")


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
