"""What a benchmark runs, read from a TOML file under evaluation/ so grids live beside their results.

    dataset = "ml-1m"                      # results go to <out>/<dataset>/
    seeds = 5                              # split seeds: split.seed, split.seed + 1, ...
    metrics = ["ndcg@100", "recall@20", "recall@50"]   # default; presplit: ["recall_full@20", "ndcg@20"]
    # selection_metric = "ndcg@100"        # default: the first metric

    [data]                                 # recvae.pipeline.DataSpec
    path = "../shared/data/ml-1m/user_movie_pairs.tsv.gz"

    [split]                                # recvae.pipeline.SplitSpec
    protocol = "strong"
    heldout_users = 600

    [[models]]
    name = "ALS"                           # the label in the tables
    model = "ALS"                          # a recvae model (recvae.models.MODELS) or "recbole:<Model>"
    params = { iterations = 15 }           # fixed hyperparameters
    grid = { factors = [64, 128] }         # every combination is tried on the validation users
    # auto_beta = true                     # Mult-VAE only: choose the β cap by recvae.train.auto_beta
    # item_features = true                 # MultVAE, MultDAE, CVAE: read [data] item_features in the decoder
    # search = { l2 = { low = 1.0, high = 1e5, log = true } }   # instead of grid: ranges for an Optuna study

    [search]                               # optional: every model's grid or search ranges become an Optuna
    trials = 20                            # study with this budget (recvae.tune.SearchConfig)
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from recvae.errors import DataError
from recvae.io import file_stem
from recvae.evaluate import DEFAULT_METRICS, PRESPLIT_METRICS
from recvae.models import REGISTRY
from recvae.models.registry import ITEM_FEATURE_MODELS
from recvae.score.metrics import parse_metric
from recvae.pipeline import DataSpec, SplitSpec, check_user_columns
from recvae.tune import Dimension, SearchConfig, parse_space

RECBOLE_PREFIX = "recbole:"


@dataclass(frozen=True)
class ModelSpec:
    """One row of the results: a model, its fixed hyperparameters and the grid tuned on validation."""

    name: str
    model: str
    params: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    auto_beta: bool = False  # Mult-VAE: each candidate's β cap is chosen by the auto-β procedure
    search: dict = field(default_factory=dict)  # ranges for an Optuna study (recvae.tune.space), with [search]
    why: str = ""  # why this model's budget differs from the others' (a hand-chosen setting under [search])
    item_features: bool = False  # the model reads [data] item_features in its decoder (MultVAE, MultDAE, CVAE)

    def __post_init__(self):
        for flag in ("auto_beta", "item_features"):
            if not isinstance(getattr(self, flag), bool):
                raise DataError(f"model {self.name!r}: {flag} must be true or false")
        if self.item_features:
            self._check_item_features()
        if self.auto_beta:
            if self.model != "MultVAE":
                raise DataError(f"model {self.name!r}: auto_beta applies to MultVAE only, not {self.model!r}")
            fixed = {"beta_cap", "beta_schedule", "total_anneal_steps"} & (set(self.params) | set(self.grid))
            if fixed:
                raise DataError(f"model {self.name!r}: auto_beta chooses {sorted(fixed)}; do not set them")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise DataError(f"model {self.name!r}: grid value {key!r} must be a non-empty list")
        both = set(self.params) & set(self.grid)
        if both:
            raise DataError(f"model {self.name!r}: {sorted(both)} both fixed and in the grid")
        if self.search and (self.grid or self.auto_beta or self.is_recbole):
            raise DataError(f"model {self.name!r}: search does not combine with grid, auto_beta or a RecBole model")
        if self.search:
            self.space()  # a bad range fails when the file is read

    def _check_item_features(self) -> None:
        if self.model not in ITEM_FEATURE_MODELS:
            raise DataError(f"model {self.name!r}: item_features is read by {', '.join(ITEM_FEATURE_MODELS)} only, "
                            f"not {self.model!r}")
        if self.auto_beta:
            raise DataError(f"model {self.name!r}: auto_beta does not read item features yet: search beta_cap instead")

    def space(self) -> dict:
        """What a study searches: the ``search`` ranges, or the grid's values as choices."""
        if not self.search:
            return {key: Dimension(key, choices=tuple(values)) for key, values in self.grid.items()}
        if self.model not in REGISTRY:
            raise DataError(f"model {self.name!r}: unknown model {self.model!r}; known: {sorted(REGISTRY)}")
        return parse_space(self.search, REGISTRY[self.model].config_class, f"model {self.name!r}", self.params)

    @property
    def is_recbole(self) -> bool:
        return self.model.startswith(RECBOLE_PREFIX)

    def candidates(self) -> list[dict]:
        """Every hyperparameter setting to try, fixed ones included; one when there is no grid."""
        keys = list(self.grid)
        return [{**self.params, **dict(zip(keys, values))} for values in itertools.product(*self.grid.values())]


@dataclass(frozen=True)
class BenchmarkConfig:
    dataset: str
    data: DataSpec
    split: SplitSpec
    models: tuple[ModelSpec, ...]
    seeds: int = 5
    metrics: tuple[str, ...] = ("ndcg@100", "recall@20", "recall@50")
    selection_metric: str = "ndcg@100"  # picks grid points and early-stopping epochs on validation users
    curve_k: int = 100
    description: str = ""
    search: SearchConfig | None = None  # [search]: every model's grid or search ranges become an Optuna study

    def __post_init__(self):
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise DataError(f"seeds must be a whole number of at least 1, not {self.seeds!r}")
        if not isinstance(self.dataset, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.dataset):
            raise DataError(f"dataset {self.dataset!r}: the results folder's name; use letters, digits, '.', '_' "
                            "and '-' only (no path)")
        if not self.models:
            raise DataError("the benchmark lists no models")
        for metric in (*self.metrics, self.selection_metric):
            try:
                parse_metric(metric)
            except ValueError as exc:
                raise DataError(str(exc)) from None
        for model in self.models:  # the epoch history must hold the metric the refit's epoch count is read from
            own = model.params.get("validation_metric", model.grid.get("validation_metric"))
            if own is not None and self.selection_metric not in (DEFAULT_METRICS + tuple(own if isinstance(own, list) else [own])):
                raise DataError(f"model {model.name!r}: validation_metric {own!r} leaves selection_metric "
                                f"{self.selection_metric!r} out of its epoch history; drop validation_metric (the "
                                "benchmark's selection metric is then used) or make them agree")
        for model in self.models:
            if model.search and self.search is None:
                raise DataError(f"model {model.name!r} has search ranges: add a [search] section (trials = N, the "
                                "budget every model gets)")
            if model.auto_beta and self.search is not None:
                raise DataError(f"model {model.name!r}: auto_beta does not run inside a [search]; search beta_cap instead")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise DataError(f"model names must be unique, got {names}")
        stems: dict[str, str] = {}
        for name in names:  # file names differ by more than case, for filesystems that ignore it
            if not name.strip() or not name.isprintable():
                raise DataError(f"model name {name!r}: a name must be printable text, not empty")
            other = stems.setdefault(file_stem(name).casefold(), name)
            if other != name:
                raise DataError(f"model names {other!r} and {name!r} differ only in case; their files would collide")

    def split_seeds(self) -> list[int]:
        return [self.split.seed + i for i in range(self.seeds)]

    def select(self, names: list[str]) -> BenchmarkConfig:
        """Only the named models, in the file's order."""
        known = {m.name for m in self.models}
        unknown = set(names) - known
        if unknown:
            raise DataError(f"unknown model(s) {sorted(unknown)}; the benchmark has {sorted(known)}")
        return dataclasses.replace(self, models=tuple(m for m in self.models if m.name in names))

    def to_json(self) -> dict:
        out = {**dataclasses.asdict(self), "data": self.data.to_json(), "split": self.split.to_json()}
        # a field added after benchmarks were recorded: written only when set, so their records still match
        out["models"] = [{k: v for k, v in m.items() if k != "item_features" or v} for m in out["models"]]
        return out


def _section(payload: dict, key: str, cls: type, where: str):
    values = dict(payload.get(key, {}))
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise DataError(f"{where}: unknown [{key}] field(s) {sorted(unknown)}; known: {sorted(known)}")
    return values


def _none_words(values: dict, model: str, listed: bool = False) -> dict:
    """TOML has no null: "none" stands for None where the model's config field takes it (focal_alpha)."""
    if model not in REGISTRY:
        return values
    hints = typing.get_type_hints(REGISTRY[model].config_class)

    def read(key, value):
        takes_none = type(None) in typing.get_args(hints.get(key))
        return None if takes_none and isinstance(value, str) and value.lower() == "none" else value

    return {key: [read(key, v) for v in value] if listed and isinstance(value, list) else read(key, value)
            for key, value in values.items()}


def _check_side_features(path: Path, models: list[ModelSpec], data: dict) -> None:
    """A CVAE needs the users' table, its width is the table's to say, and the columns named are the table's."""
    user_features = data.get("user_features")
    if data.get("user_columns") is not None:
        try:
            check_user_columns(DataSpec.from_json(data))
        except ValueError as exc:
            raise DataError(f"{path}: [data] {exc}") from None
    for spec in models:
        if spec.model.lower() != "cvae":
            continue
        if user_features is None:
            raise DataError(f"{path}: model {spec.name!r} is a CVAE: name the users' side table in [data] "
                            "user_features = \"...\"")
        if "conditions" in spec.params or "conditions" in spec.space():
            raise DataError(f"{path}: model {spec.name!r}: conditions is the number of features the users' table "
                            "encodes: leave it out")


def _check_item_table(path: Path, models: list[ModelSpec], item_features: str | None) -> None:
    """An entry that reads item features needs the table, and a table no entry reads is a mistake, not a no-op."""
    readers = [spec.name for spec in models if spec.item_features]
    if readers and item_features is None:
        raise DataError(f"{path}: model {readers[0]!r} reads item features: name the items' side table in [data] "
                        "item_features = \"...\"")
    for spec in models:
        if spec.item_features and "item_feature_width" in {**spec.params, **spec.grid, **spec.search}:
            raise DataError(f"{path}: model {spec.name!r}: item_feature_width is the number of features [data] "
                            "item_features encodes: leave it out")
    if item_features is not None and not readers:
        raise DataError(f"{path}: [data] item_features is read by no model: set item_features = true on the entries "
                        "(MultVAE, MultDAE, CVAE) that should read it")


def _check_equal_budgets(path: Path, models: list[ModelSpec], trials: int) -> None:
    """Under [search] every tunable model gets the same study; one kept at a hand-chosen setting (one fit)
    must say why, or the table would rank the budgets rather than the models."""
    for spec in models:
        tunable = spec.is_recbole or bool(getattr(REGISTRY.get(spec.model), "search_space", None))
        if tunable and not spec.space() and not spec.why.strip():
            raise DataError(f"{path}: model {spec.name!r} keeps one hand-chosen setting (1 fit) where [search] gives "
                            f"the others {trials} trials: give it search ranges, or say why in why = \"...\"")


def _model_specs(path: Path, payload: dict) -> list[ModelSpec]:
    """The file's [[models]] entries, each checked, a bad one named by its number."""
    models = []
    for number, entry in enumerate(payload.get("models", []), start=1):
        extra = set(entry) - {"name", "model", "params", "grid", "auto_beta", "search", "why", "item_features"}
        if extra or "model" not in entry:
            raise DataError(f"{path}: model entry {number} needs 'model' (and may have name, params, grid, auto_beta, "
                            f"search, why, item_features); got {sorted(entry)}")
        try:
            models.append(ModelSpec(name=entry.get("name", entry["model"]), model=entry["model"],
                                    params=_none_words(entry.get("params", {}), entry["model"]),
                                    grid=_none_words(entry.get("grid", {}), entry["model"], listed=True),
                                    auto_beta=entry.get("auto_beta", False), search=entry.get("search", {}),
                                    why=str(entry.get("why", "")), item_features=entry.get("item_features", False)))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
    return models


def load_benchmark(path: str | Path, data_path: str | None = None, seeds: int | None = None,
                   sampler_seed: int | None = None) -> BenchmarkConfig:
    """Read a benchmark file; ``data_path``, ``seeds`` and ``sampler_seed`` (its ``[search]`` seed: the same
    studies searched again along another path, to see how far a model's result moves) override the file's."""
    path = Path(path)
    try:
        payload = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such benchmark file") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from None
    known = {"dataset", "description", "seeds", "metrics", "selection_metric", "curve_k", "data", "split", "models", "search"}
    unknown = set(payload) - known
    if unknown:
        raise DataError(f"{path}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    data = _section(payload, "data", DataSpec, str(path))
    if data_path is not None:
        data["path"] = data_path
    for key in ("path", "test_path", "user_features", "item_features"):
        if data.get(key) is not None and not Path(data[key]).exists():
            given = "{data_path}" if key == "path" and data_path is not None else f"[data] {key} in {path}"
            raise DataError(f"{data[key]}: no such file ({given}; relative paths start from the working directory "
                            f"{Path.cwd()}); point the benchmark at your copy ({{data_path=PATH}}), or fetch a "
                            "dataset with 'recvae download NAME'")
    models = _model_specs(path, payload)
    _check_side_features(path, models, data)
    split = _section(payload, "split", SplitSpec, str(path))
    _check_item_table(path, models, data.get("item_features"))
    if split.get("cold_items") and data.get("item_features") is None:
        raise DataError(f"{path}: [split] cold_items compares the models with the items' content: name the items' "
                        "side table in [data] item_features")
    metrics = payload.get("metrics")
    if metrics is None:
        metrics = PRESPLIT_METRICS if split.get("protocol") == "presplit" else BenchmarkConfig.metrics
    if not isinstance(metrics, (list, tuple)) or not metrics:
        raise DataError(f"{path}: metrics must be a non-empty list of names like \"ndcg@100\", not {metrics!r}")
    metrics = tuple(metrics)
    search = _section(payload, "search", SearchConfig, str(path)) if "search" in payload else None
    if sampler_seed is not None:
        if search is None:
            raise DataError(f"{path}: has no [search] whose sampler seed --sampler-seed could set")
        search["seed"] = sampler_seed
    if search is not None:
        _check_equal_budgets(path, models, search.get("trials", SearchConfig.trials))
    try:
        return BenchmarkConfig(
            dataset=payload.get("dataset", path.stem),
            description=payload.get("description", ""),
            data=DataSpec.from_json(data),
            split=SplitSpec(**split),
            models=tuple(models),
            seeds=seeds if seeds is not None else payload.get("seeds", 5),
            metrics=metrics,
            selection_metric=payload.get("selection_metric", metrics[0] if metrics else None),
            curve_k=payload.get("curve_k", BenchmarkConfig.curve_k),
            search=SearchConfig(**search) if search is not None else None,
        )
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: {exc}") from None
