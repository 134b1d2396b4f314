"""MLflow runs for recvae: params from configs, metrics per epoch, final metrics with their
standard errors, tags that identify the data and code, artifacts and the model as pyfunc.

MLflow is imported only when tracking is on, so the rest of recvae starts fast without it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from recvae.defaults import VERSION
from recvae.environment import git_commit
from recvae.errors import RecvaeError, settle_kinds
from recvae.track.plots import auto_beta_figure, diagnostics_figure

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"


def metric_key(name: str) -> str:
    """A metric's name as MLflow takes it: "@" spelled "_at_" (``ndcg@100`` is ``ndcg_at_100``), and any
    character MLflow refuses or that would make the name a path (a benchmark model called "x/../y") spelled
    "_" + its code point in hex + "_". Readable rather than injective: a name that already spells such an
    escape could meet another (files, where that matters, are named by ``recvae.io.file_stem``)."""
    name = name.replace("@", "_at_")
    name = re.sub(r"[^A-Za-z0-9_\-. ]", lambda m: f"_{ord(m.group()):x}_", name)
    return name.replace("..", "._2e_")


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

    def __post_init__(self):
        settle_kinds(self)

    def resolved_uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return out


def environment_tags() -> dict[str, str]:
    import numpy
    import scipy
    import torch

    return {
        "recvae.version": VERSION,
        "recvae.git_commit": git_commit(),
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

    def __init__(self, config: TrackingConfig, run_name: str, nested: bool = False, run_id: str | None = None):
        try:
            import mlflow
        except ImportError:
            raise TrackingError("MLflow is not installed: pip install mlflow, or pass --no-tracking") from None
        self.mlflow = mlflow
        self.config = config
        self.run_name = run_name
        self.nested = nested
        self.run_id_to_resume = run_id  # an existing run to add to (a model's own training run)
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
        if self.run_id_to_resume:
            try:
                self.run = mlflow.start_run(run_id=self.run_id_to_resume)
                return self
            except Exception:  # the run lives in another store: a run of its own, then
                log.warning("MLflow run %s is not in %s; logging to a new run", self.run_id_to_resume,
                            self.config.resolved_uri())
        self.run = mlflow.start_run(run_name=self.run_name, nested=self.nested)
        mlflow.set_tags(environment_tags())
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.mlflow.end_run(status="FINISHED" if exc_type is None else ("KILLED" if exc_type is KeyboardInterrupt else "FAILED"))

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def ui_hint(self) -> str:
        """How to open this run in MLflow's UI: the command that serves a local store, then the run's address."""
        uri = self.config.resolved_uri()
        path = f"#/experiments/{self.run.info.experiment_id}/runs/{self.run_id}"
        if uri.startswith(("http://", "https://")):
            return f"{uri.rstrip('/')}/{path}"
        return f"mlflow ui --backend-store-uri {uri}  (then http://127.0.0.1:5000/{path})"

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
        self.mlflow.log_metrics({metric_key(k): v for k, v in metrics.items()}, step=int(record["epoch"]))

    def log_metrics(self, metrics: dict, prefix: str = "") -> None:
        self.mlflow.log_metrics({metric_key(f"{prefix}{k}"): float(v) for k, v in metrics.items()})

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
        """Log a saved recvae model directory as an MLflow pyfunc model with its signature; returns its URI."""
        code = Path(__file__).with_name("pyfunc.py")
        kwargs = dict(python_model=str(code), artifacts={"recvae_model": str(model_dir)},
                      signature=pyfunc_signature(model_dir), input_example=pyfunc_input_example(model_dir),
                      pip_requirements=pyfunc_requirements())
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            info = self.mlflow.pyfunc.log_model(name=name, **kwargs)
        except TypeError:  # MLflow before 3 names the model by artifact_path
            info = self.mlflow.pyfunc.log_model(artifact_path=name, **kwargs)
        # MLflow 3 keeps logged models apart from run artifacts; the tag says where.
        self.mlflow.set_tag("recvae.model_uri", info.model_uri)
        return info.model_uri


def pyfunc_requirements() -> list[str] | None:
    """recvae and the packages it needs at run time, pinned to the versions installed here (without a local label
    such as torch's ``+cpu``): the environment ``mlflow models serve`` builds to load the model. Given rather than
    left to MLflow, whose inference loads the model in a subprocess (seconds on every ``recvae train``) and left
    torch out of the list it wrote. None (MLflow infers them) where recvae runs from a source tree it was not
    installed from, as its requirements are then unknown."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    try:
        needs = requires("recvae") or []
    except PackageNotFoundError:
        return None
    pinned = []
    for line in ["recvae", *needs]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an optional extra's package (Spark, RecBole, the docs)
        try:
            pinned.append(f"{requirement.name}=={version(requirement.name).split('+')[0]}")
        except PackageNotFoundError:  # a dependency left out of this environment: the range recvae asks for
            pinned.append(str(requirement))
    return pinned


def pyfunc_signature(model_dir: str | Path):
    """(user, item) columns typed as the model's IDs, and the params ``n`` and ``include_seen``, so that
    ``predict(frame, params={"n": 3})`` and a serving endpoint's params take effect. The user column is
    typed when the model recorded its users' ID kind (``recvae train`` does), else left to the data."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    kinds = {"int": "long", "str": "string"}
    model_dir = Path(model_dir)
    metadata = json.loads((model_dir / "model.json").read_text()).get("metadata", {})
    items = model_dir / "items.json"
    item_kind = json.loads(items.read_text())["kind"] if items.exists() else None
    user_kind = metadata.get("user_id_kind")
    inputs = None
    if item_kind in kinds and user_kind in kinds:
        inputs = Schema([ColSpec(kinds[user_kind], "user"), ColSpec(kinds[item_kind], "item")])
    params = ParamSchema([ParamSpec("n", "long", 10), ParamSpec("include_seen", "boolean", False)])
    return ModelSignature(inputs=inputs, params=params)


def pyfunc_input_example(model_dir: str | Path):
    """One user's history of the model's first two items, in its ID types: what ``predict`` takes (MLflow
    stores it beside the signature and shows it in the UI); None for a model without item IDs."""
    import pandas as pd

    model_dir = Path(model_dir)
    items = model_dir / "items.json"
    if not items.exists():
        return None
    vocabulary = json.loads(items.read_text())
    user_kind = json.loads((model_dir / "model.json").read_text()).get("metadata", {}).get("user_id_kind")
    user = "user-1" if user_kind == "str" else 1
    return pd.DataFrame({"user": [user] * min(2, len(vocabulary["ids"])), "item": vocabulary["ids"][:2]})


class NullTracker:
    """Tracking turned off: the same calls, doing nothing."""

    run_id = None

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def child(self, run_name: str) -> NullTracker:
        return self

    def ui_hint(self) -> None:
        return None

    def __getattr__(self, name):
        if name.startswith("log_") or name == "set_tags":
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def start_tracking(config: TrackingConfig, run_name: str, run_id: str | None = None) -> Tracker | NullTracker:
    """A run named ``run_name``, or the existing run ``run_id`` continued; nothing with tracking off."""
    return Tracker(config, run_name, run_id=run_id) if config.enabled else NullTracker()


def log_beta_diagnostics(tracker, history: list[dict], chosen_beta: dict | None = None, title: str = "",
                         figures: bool = True) -> None:
    """The per-dimension KL of every epoch and, for auto-β, the chosen β and its curve, as MLflow
    artifacts (the scalar diagnostics are already per-epoch metrics); ``title`` heads the figures, drawn
    unless ``figures`` is False (a caller that logs them itself)."""
    if history and "kl_per_dim" in history[0]:
        tracker.log_dict({"kl_per_dim": [r["kl_per_dim"] for r in history]}, "kl_per_dim.json")
        if tracker.run_id and figures:  # matplotlib only when a run records it
            tracker.log_figure(diagnostics_figure(history, title), "plots/posterior_diagnostics.png")
    if chosen_beta:
        tracker.log_metrics({"auto_beta": chosen_beta["beta"]})
        tracker.log_dict(chosen_beta, "auto_beta.json")
        if tracker.run_id and figures:
            tracker.log_figure(auto_beta_figure({"anneal run": chosen_beta}, title), "plots/auto_beta.png")
