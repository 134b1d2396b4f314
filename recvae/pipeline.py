"""What ``recvae train`` and ``recvae evaluate`` do, as functions of typed specs:
read -> preprocess -> split -> fit (or auto-β) -> evaluate -> save -> track.

The data and split specs are saved with every model, so ``evaluate_saved`` rebuilds the very
split a model was trained on. The CLI only parses flags into these specs and prints the results."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import scipy.sparse as sp

from recvae.data.features import FeatureEncoding, encode_item_table, fit_features
from recvae.data.interactions import Interactions, Preprocessing, preprocess
from recvae.data.readers import read_interactions, read_lightgcn
from recvae.data.shard import file_chunks, read_user_shard
from recvae.data.side import read_side_table
from recvae.data.synthetic import SyntheticLog, generate_log
from recvae.defaults import SEED
from recvae.errors import DataError, DataParameterError, ParameterError, at_least, one_of, settle_kinds
from recvae.io import WriteError, check_writable, claimed, write_atomic_bytes
from recvae.evaluate import default_metrics, evaluate, evaluate_cold_items, evaluate_curves, example_users
from recvae.models import CVAE, IterativeRecommender, MultVAE, Popularity, Recommender, Trainer
from recvae.models.device import resolve_device
from recvae.models.registry import check_reads_item_features
from recvae.models.training.distributed import World, join_world, launched_world, local_device
from recvae.score.metrics import parse_metric
from recvae.split import Split, presplit, random_holdout_split, strong_generalization_split
from recvae.split.conditioned import ColdItems, cold_items, cold_start, heldout_with_features, with_user_features
from recvae.split.sharded import sharded_strong_split
from recvae.track import TrackingConfig, start_tracking
from recvae.track.plots import (auto_beta_figure, diagnostics_figure, metric_curves_figure, training_curves_figure,
                                write_figures)
from recvae.track.tracking import log_beta_diagnostics
from recvae.train import build_model, fit_model, validation_scorer
from recvae.train.auto_beta import auto_beta

log = logging.getLogger(__name__)

PROTOCOLS = ("strong", "holdout", "presplit")


@dataclass(frozen=True)
class DataSpec:
    """Where the interactions come from. ``path=None`` is the embedded synthetic log."""

    path: str | None = None
    test_path: str | None = None
    format: str = "auto"  # "auto" (see read_interactions) or "lightgcn"
    reader: dict = field(default_factory=dict)
    preprocessing: Preprocessing = Preprocessing()
    synthetic: SyntheticLog = SyntheticLog()
    user_features: str | None = None  # the users' side table a conditional model reads (recvae.data.side)
    user_columns: tuple[str, ...] | None = None  # the columns of it read (None: every column but names)
    item_features: str | None = None  # the items' side table Mult-VAE, Mult-DAE and CVAE read in their decoder

    def __post_init__(self):
        settle_kinds(self)
        if self.user_columns is not None and (not self.user_columns or self.user_features is None):
            raise ParameterError("user_columns", self.user_columns, "names some columns of the users' side "
                                 "table: give the table (--user-features FILE) and at least one column")
        if self.reader.get("rating") is False and self.preprocessing.min_rating is not None:
            raise ParameterError("min_rating", self.preprocessing.min_rating, "keeps interactions by their rating, "
                                 "but {rating} none ignores the rating column: drop one of them")

    def to_json(self) -> dict:
        return _set_fields(self)

    @classmethod
    def from_json(cls, payload: dict) -> DataSpec:
        payload = dict(payload)
        payload["preprocessing"] = Preprocessing(**payload.get("preprocessing", {}))
        payload["synthetic"] = SyntheticLog(**payload.get("synthetic", {}))
        return cls(**payload)

    def describe(self) -> str:
        return self.path if self.path is not None else "embedded synthetic log"


@dataclass(frozen=True)
class SplitSpec:
    """How to split: the protocol and its parameters (see recvae.split)."""

    protocol: str = "strong"
    heldout_users: int | None = None  # strong: per part; default 10% of users
    holdout_fraction: float = 0.2
    seed: int = SEED
    cold_items: float = 0.0  # share of the items left out of training for the cold-item protocol (0: none)

    def __post_init__(self):
        settle_kinds(self)
        one_of(PROTOCOLS, protocol=self.protocol)
        if not 0.0 <= self.cold_items < 1.0:
            raise ParameterError("cold_items", self.cold_items, "must lie in [0, 1): the share of the items made cold")
        if self.cold_items and self.protocol != "strong":
            raise ParameterError("cold_items", self.cold_items, f"needs protocol strong, not {self.protocol}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ParameterError("holdout_fraction", self.holdout_fraction, "must lie strictly between 0 and 1")
        if self.heldout_users is not None and self.heldout_users < 1:
            raise ParameterError("heldout_users", self.heldout_users, "must be at least 1 (or none for 10% of the users)")


    def to_json(self) -> dict:
        return _set_fields(self)


# Fields added after runs were recorded, and their defaults: written only when set, so that the records of
# earlier runs (model folders, benchmark folders, studies) still match a spec that leaves them out.
LATER_FIELDS = {"item_features": None, "cold_items": 0.0, "user_columns": None}


def _set_fields(spec) -> dict:
    return {k: v for k, v in dataclasses.asdict(spec).items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


def read_frame(spec: DataSpec, path: str | None = None):
    """One file of the log as a frame (user, item[, rating][, timestamp]); ``path=None`` is the embedded log."""
    if path is None:
        return generate_log(spec.synthetic)
    if spec.format == "lightgcn":
        return read_lightgcn(path)
    if spec.format != "auto":
        raise DataError(f"unknown data format {spec.format!r}; expected 'auto' or 'lightgcn'")
    return read_interactions(path, **spec.reader)


def prepare_split(data: DataSpec, split: SplitSpec, world: World | None = None) -> tuple[Split, Interactions | None]:
    """Read, preprocess and split, each once; returns the split and (except for pre-split files and a ``world``
    of several processes) the full data. With ``world`` (joined), each process reads only the rows of the
    users it owns and the strong split is cut from their exchanged IDs and counts: the split is the one
    process's, with each process holding its own training users' rows (a ``UserRows``)."""
    if split.protocol == "presplit" and (data.path is None or data.test_path is None):
        raise DataError("the presplit protocol needs a training file and a test file")
    if split.protocol != "presplit" and data.test_path is not None:
        raise ParameterError("protocol", split.protocol, "splits one file, but a test file was given; "
                             "use {protocol} presplit")
    if world is not None and world.size > 1 and split.protocol == "strong" and data.format == "auto":
        return _sharded_split(data, split, world), None
    if split.protocol == "presplit":
        kept = dataclasses.replace(data.preprocessing, min_user_interactions=0)  # test users may be short
        train, test = (preprocess(read_frame(data, path), kept, path) for path in (data.path, data.test_path))
        return presplit(train, test), None
    interactions = Interactions.from_frame(preprocess(read_frame(data, data.path), data.preprocessing, data.describe()))
    if split.protocol == "strong":
        n = split.heldout_users if split.heldout_users is not None else max(1, round(0.1 * interactions.n_users))
        with _named(data, split):
            return strong_generalization_split(interactions, n, holdout_fraction=split.holdout_fraction, seed=split.seed), interactions
    return random_holdout_split(interactions, test_fraction=split.holdout_fraction, seed=split.seed), interactions


@dataclass(frozen=True)
class UserFeatures:
    """The users' side table as a CVAE reads it: its ``encoding`` and the encoded ``rows``, one per user of the
    split (``Split.users``), kept so that a later stage (the cold-item protocol) does not read the table again."""

    encoding: FeatureEncoding
    rows: sp.csr_matrix


def model_split(model: Recommender, split: Split, data: DataSpec,
                encoding: FeatureEncoding | None = None) -> tuple[Split, UserFeatures | None]:
    """The split as ``model`` reads it, and its users' side features: a CVAE reads each user's (``data.user_features``,
    encoded as ``encoding`` says, or as the training users' values say where it is None: a saved model's encoding
    is its own, whatever the table holds now) as the last columns; every other model the split as it is. A CVAE
    without the table, or the table for another model, is refused."""
    conditional = isinstance(model, CVAE)
    if data.user_features is None:
        if conditional:
            raise ParameterError("user_features", None, "CVAE reads the users' side features: give the users' "
                                 "table (--user-features FILE)")
        return split, None
    if not conditional:
        raise ParameterError("user_features", data.user_features, f"is read by CVAE only, not by {model.name}")
    return with_side_features(split, data, encoding)


def with_side_features(split: Split, data: DataSpec,
                       encoding: FeatureEncoding | None = None) -> tuple[Split, UserFeatures]:
    """``split`` with the users' side table ``data.user_features`` appended, encoded as ``encoding`` says or,
    without one, as its training users' values say (``recvae.split.conditioned.with_user_features``), and the
    encoded rows with their encoding."""
    table = read_side_table(data.user_features)  # under torchrun every process reads it, and encodes it alike
    encoding = encoding or fit_features(table, split.users.subset(split.train_users), columns=data.user_columns)
    users = UserFeatures(encoding, encoding.transform(table, split.users))
    return with_user_features(split, users.rows, encoding.names()), users


@contextlib.contextmanager
def _named(data: DataSpec, split: SplitSpec):
    """A strong split that cannot be cut names the data, and the default that chose its held-out users."""
    try:
        yield
    except DataParameterError as error:
        default = "" if split.heldout_users is not None else " ({heldout_users} unset: 10% of the users)"
        raise DataParameterError(error.name, error.value, f"{data.describe()}: {error.problem}{default}") from None
    except DataError as error:
        raise DataError(f"{data.describe()}: {error}") from None


def _sharded_split(data: DataSpec, split: SplitSpec, world: World) -> Split:
    chunks = file_chunks(data.path, data.reader) if data.path is not None else iter([generate_log(data.synthetic)])
    frame = read_user_shard(chunks, world.rank, world.size)
    skipped = sum(world.gather(frame.attrs["skipped_lines"]))
    if skipped and world.main:
        log.warning("%s: skipped %d malformed lines", data.path, skipped)
    with _named(data, split):
        return sharded_strong_split(frame, data.preprocessing, split.heldout_users, world.gather,
                                    holdout_fraction=split.holdout_fraction, seed=split.seed, source=data.describe())


@dataclass(frozen=True)
class TrainSpec:
    """One ``recvae train`` run. ``model`` is a registered name (``recvae.models.REGISTRY``), ``params``
    its hyperparameters over the config's defaults."""

    model: str = "MultVAE"
    params: dict = field(default_factory=dict)
    data: DataSpec = DataSpec()
    split: SplitSpec = SplitSpec()
    out: str = "models/recvae-model"
    checkpoint_dir: str | None = None
    resume: bool = False
    auto_beta: bool = False  # Mult-VAE: choose the β cap on the validation users (two trainings)
    metrics: tuple[str, ...] | None = None  # None: the protocol's own (recvae.evaluate.default_metrics)
    baseline: bool = True  # popularity beside the model
    tracking: TrackingConfig = TrackingConfig()
    progress: bool | None = None
    overwrite: bool = False  # replace an existing model directory at ``out``

    def __post_init__(self):
        settle_kinds(self)

    def build_model(self) -> Recommender:
        """The unfitted model, its hyperparameters checked: every check that needs no data."""
        model = build_model(self.model, self.params)
        model_class = type(model)
        check_side_tables(model, self.data, self.split, self.auto_beta)
        if self.resume and not self.checkpoint_dir:
            raise ParameterError("resume", True, "needs {checkpoint_dir}, the folder of the interrupted run")
        if self.auto_beta and (model_class is not MultVAE or self.checkpoint_dir or "beta_cap" in self.params):
            raise ParameterError("auto_beta", True, "chooses Mult-VAE's beta cap itself and writes no checkpoints: "
                                 "use it with MultVAE, without {beta_cap} and {checkpoint_dir}")
        if self.checkpoint_dir and not issubclass(model_class, IterativeRecommender):
            raise ParameterError("checkpoint_dir", self.checkpoint_dir,
                                 f"{model_class.name} does not train by epochs: it has no checkpoints")
        for metric in self.metrics or ():
            parse_metric(metric)
        if "device" in model.get_params():
            resolve_device(model.get_params()["device"])  # --device cuda without CUDA fails before the data is read
        if self.checkpoint_dir:
            check_writable(self.checkpoint_dir, "the checkpoint directory")
        return model


def check_user_columns(data: DataSpec) -> None:
    """The columns ``data.user_columns`` names are the users' table's: a misspelt one fails before the log is
    read and split (the table is read for it, and again when the model reads it)."""
    if data.user_columns is None:
        return
    columns = read_side_table(data.user_features).columns
    unknown = [c for c in data.user_columns if c not in columns]
    if unknown:
        raise DataError(f"{data.user_features}: no column {unknown[0]!r} (--user-columns, or user_columns in a "
                        f"benchmark file's [data]); its columns are {', '.join(map(str, columns))}")


def check_side_tables(model: Recommender, data: DataSpec, split: SplitSpec, auto_beta: bool = False) -> None:
    """The side tables ``data`` names are ``model``'s to read and exist, and what needs one has it: the checks
    ``recvae train`` and ``recvae tune`` make before any data is read."""
    features = data.user_features
    if (features is None) == isinstance(model, CVAE):
        raise ParameterError("user_features", features, "CVAE reads the users' side features (--user-features "
                             "FILE), and only CVAE does" + (f", not {model.name}" if features else ""))
    if features is not None and not Path(features).is_file():
        raise DataError(f"{features}: no such file (the users' side table, --user-features)")
    check_user_columns(data)
    items, share = data.item_features, split.cold_items
    if items is not None:
        check_reads_item_features(model.name, items)
    if items is not None and not Path(items).is_file():
        raise DataError(f"{items}: no such file (the items' side table, --item-features)")
    if model.get_params().get("item_dropout") and items is None:
        raise ParameterError("item_dropout", model.get_params()["item_dropout"], "drops items' free vectors in "
                             "favour of their side features: it needs them (--item-features FILE)")
    if share and items is None:
        raise ParameterError("cold_items", share, "scores items no training user has: it needs their side table "
                             "(--item-features FILE), which the model and the content baseline read")
    if items is not None and auto_beta:
        raise ParameterError("auto_beta", True, "does not read item features yet: set {beta_cap} instead")


@dataclass
class TrainResult:
    model: Recommender
    split: Split
    results: dict[str, dict[str, float]]  # model name -> test summary (mean and standard error per metric)
    seconds: float
    model_dir: Path | None  # None on a torchrun rank other than 0, which saves nothing
    run_id: str | None
    metrics: tuple[str, ...]
    auto_beta: dict | None = None
    plots: list[Path] = dataclasses.field(default_factory=list)  # the figures written into the model folder
    mlflow_ui: str | None = None  # how to look at the run in MLflow's UI
    cold_items: dict[str, dict[str, float]] | None = None  # the cold-item protocol's table (COLD_ITEM_METRICS)


def train_model(spec: TrainSpec, notify: Callable[[str], None] = log.info) -> TrainResult:
    """Read, split, fit (or auto-β), score the test users beside popularity, save, and log it all to MLflow.

    ``notify`` receives one line per stage (the CLI prints them). Under torchrun every rank reads the rows
    of its own users (a model the Trainer trains; the whole log for any other), splits and trains; rank 0
    alone scores, saves and logs, and the other ranks return without a ``model_dir``."""
    world = launched_world()
    if not world.main:
        spec = dataclasses.replace(spec, tracking=dataclasses.replace(spec.tracking, enabled=False))
        notify = _silent
    model = spec.build_model()
    # rank 0 claims the model directory now: an existing one is refused unless overwrite, a second run at once too
    claim = claimed(spec.out, "the model directory", overwrite=spec.overwrite, directory=True) if world.main else None
    with claim or contextlib.nullcontext(), start_tracking(spec.tracking, f"train-{model.name}") as tracker:
        notify(f"data: {spec.data.describe()}")
        # under torchrun each rank reads only its own users' rows for a model the Trainer trains
        shard = (join_world(local_device(model.training_plan().device))
                 if world.size > 1 and isinstance(model, IterativeRecommender) and not spec.auto_beta else None)
        split, data = prepare_split(spec.data, spec.split, shard)
        notify(f"split ({spec.split.protocol}): {split.summary()}")
        split, cold, item_features = _item_side(model, split, spec, notify)
        plain_split, (split, users) = split, model_split(model, split, spec.data)
        encoding = None if users is None else users.encoding
        _set_width(model, spec, "conditions", encoding, spec.data.user_features, notify)
        if split.validation is None:
            notify("no validation users: training every epoch, keeping the last weights")
        tracker.log_params({"model": model.name, "config": model.get_params(), "data": spec.data.to_json(),
                            "split": spec.split.to_json()})
        tracker.set_tags({"split.seed": spec.split.seed, "split.protocol": spec.split.protocol, "command": "train",
                          **({"dataset.fingerprint": split.fingerprint()} if split.fingerprint() else {})})
        started = time.perf_counter()
        model, chosen = _fit(spec, model, split, tracker, notify, item_features)
        seconds = time.perf_counter() - started
        notify(f"trained {model.name}" + (f": {len(model.history_)} epochs" if hasattr(model, "history_") else "")
               + f" in {seconds:.1f} s")
        if not world.main:
            return TrainResult(model, split, {}, seconds, None, None, spec.metrics or default_metrics(spec.split.protocol), chosen)
        compared = [model] + ([Popularity().fit(plain_split.train)] if spec.baseline else [])
        metrics = spec.metrics or default_metrics(spec.split.protocol)
        results = {m.name: evaluate(m, split.test if m is model else plain_split.test, metrics).summary() for m in compared}
        cold_results = _cold_item_results(model, cold, item_features, spec.split.seed, tracker, users)
        history = getattr(model, "history_", [])
        metadata = {"history": history, "data": spec.data.to_json(), "split": spec.split.to_json(),
                    "mlflow_run_id": tracker.run_id,
                    "user_id_kind": split.users.kind, "split_fingerprint": plain_split.fingerprint(),
                    **({"user_features": encoding.to_json()} if encoding is not None else {}),
                    **({"cold_item_metrics": cold_results} if cold_results is not None else {}),
                    "data_fingerprint": data.fingerprint() if data is not None else None,
                    "test_metrics": results[model.name], "train_seconds": seconds,
                    **({"auto_beta": chosen} if chosen else {})}
        model_dir = _save_or_keep(model, spec.out, metadata)
        for m in compared:
            tracker.log_metrics(results[m.name], prefix="test_" if m is model else "popularity_test_")
        tracker.log_metrics({"train_seconds": seconds, "epochs": len(history)})
        plots = _write_plots(model_dir, history, compared, {model.name: split.test}, plain_split, chosen, spec.data,
                             spec.split.seed)
        _log_artifacts(tracker, model_dir, results, metrics, history, chosen)
        return TrainResult(model, split, results, seconds, model_dir, tracker.run_id, metrics, chosen, plots,
                           tracker.ui_hint(), cold_results)


def _silent(line: str) -> None:
    """The notify of a rank other than 0: rank 0 says it all once."""


def _save_or_keep(model: Recommender, out: str, metadata: dict) -> Path:
    """Save the trained model; if ``out`` cannot be written now (a full or read-only disk), keep it in a
    temporary folder and say where, rather than lose the training."""
    try:
        return model.save(out, metadata)
    except OSError as exc:
        failed = exc.strerror if isinstance(exc, WriteError) else f"{out}: could not be written ({exc.strerror or exc})"
        try:
            kept = model.save(Path(tempfile.mkdtemp(prefix="recvae-unsaved-")) / "model", metadata)
        except OSError as again:
            raise WriteError(exc.errno or errno.EIO, f"{failed}; keeping it in a temporary folder failed too "
                             f"({again.strerror or again}): the trained model is lost") from None
        raise WriteError(exc.errno or errno.EIO, f"{failed}; the trained model is kept in {kept}") from None


def _item_side(model: Recommender, split: Split, spec: TrainSpec, notify) -> tuple[Split, ColdItems | None, sp.csr_matrix | None]:
    """The split the model trains on (the cold-item protocol's, where asked), that protocol, and the items'
    side features; the model is told their width."""
    cold = cold_items(split, spec.split.cold_items, spec.split.seed) if spec.split.cold_items else None
    if cold is not None:
        split = cold.split
        notify(f"cold items: {len(cold.items)} items left out of training; {len(cold.test)} test users have some")
    if spec.data.item_features is None:
        return split, cold, None
    features, encoding = encode_item_table(spec.data.item_features, split.items)
    _set_width(model, spec, "item_feature_width", encoding, spec.data.item_features, notify)
    return split, cold, features


def _set_width(model: Recommender, spec: TrainSpec, field: str, encoding: FeatureEncoding | None, table: str | None,
               notify) -> None:
    """Tell the model how many side features ``table`` encodes (its config's ``field``), as a flag may not."""
    if encoding is None:
        return
    if spec.params.get(field, encoding.width) != encoding.width:
        raise ParameterError(field, spec.params[field], f"differs from the {encoding.width} features {table} "
                             "encodes: leave it out")
    model.set_params(**{field: encoding.width})
    notify(f"{'user' if field == 'conditions' else 'item'} features: {encoding.width} from {table}")


def _cold_item_results(model: Recommender, cold: ColdItems | None, item_features, seed: int, tracker,
                       users: UserFeatures | None) -> dict | None:
    """The cold-item protocol's table (``recvae.evaluate.evaluate_cold_items``), logged; None without one. A
    CVAE reads its test users with their features (``users``, over the cold split's users)."""
    if cold is None:
        return None
    model_heldout = None if users is None else heldout_with_features(cold.test, users.rows)
    results = {name: r.summary() for name, r in
               evaluate_cold_items(model, cold, item_features, seed=seed, model_heldout=model_heldout).items()}
    for name, summary in results.items():
        tracker.log_metrics(summary, prefix=f"cold_items_{'model' if name == model.name else name.replace(' ', '_')}_")
    return results


def _fit(spec: TrainSpec, model: Recommender, split: Split, tracker, notify,
         item_features: sp.csr_matrix | None = None) -> tuple[Recommender, dict | None]:
    """The fit itself: through the Trainer (checkpoints, MLflow per epoch), or auto-β's two trainings."""
    if not spec.auto_beta:
        trainer = Trainer(checkpoint_dir=spec.checkpoint_dir, resume=spec.resume, callbacks=(tracker.log_epoch,),
                          progress=spec.progress)
        return fit_model(model, split.train, split.validation, split.items, trainer=trainer,
                         item_features=item_features), None
    if split.validation is None:
        raise ValueError("auto-β needs validation users (protocol strong or holdout)")
    validation = validation_scorer(split.validation, model.config.validation_metric)
    chosen = auto_beta(model.config, split.train, validation, split.items, callbacks=(tracker.log_epoch,),
                       progress=spec.progress)
    notify(f"auto-β: {chosen.beta:.3g} (validation peak at epoch {chosen.peak_epoch} of the anneal run)")
    return chosen.model, chosen.to_json()


def _write_plots(model_dir: Path, history, compared, tests: dict, split: Split, chosen, data: DataSpec,
                 seed: int) -> list[Path]:
    """The run's figures, into the model folder's ``plots/`` (MLflow gets the same files), beside the curves'
    numbers (``plots/metrics_at_k.json``). ``tests``: a model's own test users where it reads them otherwise
    than ``split`` holds them (a CVAE's, with their features)."""
    title = f"{compared[0].name}: {data.describe()}, split seed {seed}"
    curves = {m.name: evaluate_curves(m, tests.get(m.name, split.test)) for m in compared}
    figures = {"metrics_at_k.png": metric_curves_figure(curves, f"test users: {data.describe()}, split seed {seed}")}
    if history:
        figures["training_curves.png"] = training_curves_figure(history, title)
    if history and "kl_per_dim" in history[0]:
        figures["posterior_diagnostics.png"] = diagnostics_figure(history, title)
    if chosen:
        figures["auto_beta.png"] = auto_beta_figure({"anneal run": chosen}, title)
    folder = Path(model_dir) / "plots"
    paths = write_figures(folder, figures)
    write_atomic_bytes(folder / "metrics_at_k.json", json.dumps(
        {name: {k: v.tolist() for k, v in c.items()} for name, c in curves.items()}).encode())
    return paths


def _log_artifacts(tracker, model_dir, results, metrics, history, chosen) -> None:
    tracker.log_dict(json.loads((Path(model_dir) / "model.json").read_text())["config"], "config.json")
    tracker.log_dict({"table": format_table(results, metrics).splitlines()}, "results/test_metrics.json")
    log_beta_diagnostics(tracker, history, chosen, figures=False)  # the figures are in the model's plots/
    tracker.log_artifact(Path(model_dir) / "plots", "plots")
    tracker.log_artifact(model_dir, "recvae_model")
    tracker.log_model(model_dir)


@dataclass(frozen=True)
class EvaluateSpec:
    """One ``recvae evaluate`` run: a saved model, and the data and split to score (default: its own)."""

    model_dir: str
    data: DataSpec | None = None
    split: SplitSpec | None = None
    metrics: tuple[str, ...] | None = None  # None: the protocol's own (recvae.evaluate.default_metrics)
    baseline: bool = False
    tracking: TrackingConfig = TrackingConfig()
    examples: int = 3  # test users shown whole (history, recommendations, which were held out)
    item_names: str | None = None  # a table of item ID -> name, shown beside the examples' IDs
    cold_start: tuple[int, ...] = ()  # also score the test users with only this many of their items given, each in turn

    def __post_init__(self):
        settle_kinds(self)
        at_least(0, **{f"cold_start[{i}]": n for i, n in enumerate(self.cold_start)})


@dataclass
class EvaluateResult:
    data: DataSpec
    split: Split
    results: dict[str, dict[str, float]]
    run_id: str | None
    metrics: tuple[str, ...]
    examples: pd.DataFrame | None = None  # recvae.evaluate.example_users for spec.examples test users
    cold_items: dict[str, dict[str, float]] | None = None  # the cold-item protocol's table, where the split has one
    cold_start: dict[str, dict[str, float]] | None = None  # "<model>, <n> given" -> summary, where asked


def evaluate_saved(spec: EvaluateSpec) -> EvaluateResult:
    """Score a saved model's test users, on the split it recorded unless ``spec`` gives data."""
    model = Recommender.load(spec.model_dir)
    meta = model.metadata_
    if spec.data is not None:
        data_spec, split_spec = spec.data, spec.split or SplitSpec()
    elif "data" in meta and "split" in meta:
        data_spec, split_spec = DataSpec.from_json(meta["data"]), SplitSpec(**meta["split"])
    else:
        raise ValueError(f"{spec.model_dir} does not record its data; pass --data")
    plain_split, split, users, cold = saved_model_split(model, spec.model_dir, data_spec, split_spec)
    with start_tracking(spec.tracking, f"evaluate-{model.name}") as tracker:
        tracker.log_params({"model": model.name, "model_dir": str(spec.model_dir), "config": model.get_params(),
                            "data": data_spec.to_json(), "split": split_spec.to_json()})
        tracker.set_tags({"dataset.fingerprint": split.fingerprint(), "split.seed": split_spec.seed, "command": "evaluate"})
        metrics = spec.metrics or default_metrics(split_spec.protocol)
        results = {model.name: evaluate(model, split.test, metrics).summary()}
        if spec.baseline:
            results["Popularity"] = evaluate(Popularity().fit(plain_split.train), plain_split.test, metrics).summary()
        for name, summary in results.items():
            tracker.log_metrics(summary, prefix="test_" if name == model.name else "popularity_test_")
        features = _saved_item_features(model) if cold is not None else None
        cold_results = _cold_item_results(model, cold, features, split_spec.seed, tracker, users)
        new_users = _cold_start_results(model, split, plain_split, spec.cold_start, metrics, split_spec.seed, tracker)
        examples = (example_users(model, split.test, split.users, spec.examples, item_names=spec.item_names)
                    if spec.examples else None)
        return EvaluateResult(data_spec, split, results, tracker.run_id, metrics, examples, cold_results, new_users)


def saved_model_split(model: Recommender, model_dir, data_spec: DataSpec,
                      split_spec: SplitSpec) -> tuple[Split, Split, UserFeatures | None, ColdItems | None]:
    """The split ``data_spec`` and ``split_spec`` make, checked against the saved ``model`` (its items, and the split
    it was trained on where the data is its own): the split as it is (the cold-item protocol's where asked), the
    same as the model reads it (a CVAE's users' features appended, encoded as the model saved them), the users'
    features and the cold items (None where there are none)."""
    meta = model.metadata_
    plain_split, data = prepare_split(data_spec, split_spec)
    if split_spec.cold_items and data_spec.item_features is None:
        raise ParameterError("cold_items", split_spec.cold_items, "ranks the cold items against their content: give "
                             "the items' side table (--item-features FILE)")
    cold = cold_items(plain_split, split_spec.cold_items, split_spec.seed) if split_spec.cold_items else None
    plain_split = plain_split if cold is None else cold.split
    saved = meta.get("user_features")  # the encoding the model was trained with, not a new fit of the table
    _check_user_columns(data_spec, saved)
    split, users = model_split(model, plain_split, data_spec, None if saved is None else FeatureEncoding.from_json(saved))
    if model.items_ is not None and model.items_ != split.items:
        raise ValueError("the model's items differ from this split's items: it was trained on other data or another split")
    _check_same_split(model_dir, meta, plain_split, data)
    return plain_split, split, users, cold


def _check_user_columns(data: DataSpec, saved: dict | None) -> None:
    """Columns asked of the users' table must be those the model was trained on: its saved encoding decides."""
    trained = None if saved is None else tuple(c["name"] for c in saved["columns"])
    if data.user_columns is not None and data.user_columns != trained:
        raise ParameterError("user_columns", ",".join(data.user_columns), "differs from the columns the model was "
                             f"trained on ({', '.join(trained or ())}): they are read from its saved encoding; "
                             "leave the flag out")


def _saved_item_features(model: Recommender) -> sp.csr_matrix:
    """The items' encoded side features a model that reads them saved: what the content baseline of the
    cold-item protocol compares against (the table is not read, nor its encoding fitted, again)."""
    features = model.fitted_item_features()
    if features is None:
        raise ParameterError("cold_items", "recorded", f"compares a model that reads item features; {model.name} "
                             "saved none")
    return features


def _cold_start_results(model: Recommender, split: Split, plain_split: Split, given: tuple[int, ...], metrics,
                        seed: int, tracker) -> dict | None:
    """The test users scored with only ``given`` of their items, each number in turn, the rest of their items
    the target (``recvae.split.conditioned.cold_start``, drawn with the split's seed): the model (a CVAE with
    the users' features too) and popularity, on the same users and items; None where not asked."""
    if not given:
        return None
    popularity, width, out = Popularity().fit(plain_split.train), getattr(model.config, "conditions", 0), {}
    for n in given:
        rows = {model.name: evaluate(model, cold_start(split.test, n, seed, features=width), metrics).summary(),
                "Popularity": evaluate(popularity, cold_start(plain_split.test, n, seed), metrics).summary()}
        for name, summary in rows.items():
            out[f"{name}, {n} given"] = summary
            tracker.log_metrics(summary, prefix=f"cold_start_{n}_{'model' if name == model.name else 'popularity'}_")
    return out


def _check_same_split(model_dir, meta: dict, split: Split, data: Interactions | None) -> None:
    """Refuse to score a model on a split of its own training data other than the one it was trained on:
    its test users could be users it trained on."""
    trained_on = meta.get("split_fingerprint")
    if trained_on is None or split.fingerprint() == trained_on:
        return
    same_data = data is not None and meta.get("data_fingerprint") == data.fingerprint()
    recorded = meta.get("split", {})
    if same_data or "data" not in meta:
        raise ValueError(
            f"{model_dir}: this split (fingerprint {split.fingerprint()}) is not the one the model was trained on "
            f"({trained_on}), so its test users may be training users; the model was split with {recorded} "
            "(pass those split options, e.g. --split-seed, --heldout-users, or leave out --data)")
    log.warning("%s: scoring on other data than the model was trained on (data fingerprint %s, trained on %s)",
                model_dir, data.fingerprint() if data is not None else "-", meta.get("data_fingerprint"))


def format_table(rows: dict[str, dict[str, float]], metrics) -> str:
    """Models as rows, metrics as 'mean ± standard error' columns (the table says so in its last line)."""
    width = max(len("model"), *(len(n) for n in rows))
    header = f"{'model':<{width}}  " + "  ".join(f"{m:>16}" for m in metrics)
    lines = [header, "-" * len(header)]
    for name, summary in rows.items():
        cells = [f"{summary[m]:.4f} ± {summary[m + '_se']:.4f}" for m in metrics]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>16}" for c in cells))
    lines.append("± is the standard error of the mean over the test users (one split and one fit; "
                 "benchmarks give intervals over split seeds)")
    return "\n".join(lines)
