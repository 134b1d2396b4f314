"""``recvae tune``: one model on one dataset, searched on its validation users, the best setting written as
a file of ``recvae train`` flags (``recvae train --config FILE`` trains from it)."""

from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recvae.data.features import encode_item_table
from recvae.errors import DataError, ParameterError, settle_kinds
from recvae.io import check_writable, write_atomic_bytes
from recvae.train import build_model
from recvae.pipeline import DataSpec, SplitSpec, check_side_tables, model_split, prepare_split
from recvae.score.metrics import parse_metric
from recvae.split import validation_from_training
from recvae.track import TrackingConfig, start_tracking
from recvae.tune.space import parse_space
from recvae.tune.study import SearchConfig, StudyResult, run_study, sqlite_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneSpec:
    """One search. ``space`` is a search table (``recvae.tune.space``); None searches the model's own
    ``search_space``. ``params`` are fixed hyperparameters; ``metric`` None is the protocol's first."""

    model: str = "MultVAE"
    params: dict = field(default_factory=dict)
    space: dict | None = None
    data: DataSpec = DataSpec()
    split: SplitSpec = SplitSpec()
    metric: str | None = None
    search: SearchConfig = SearchConfig()
    out: str = "tuned.toml"  # the best setting as `recvae train` flags; the study beside it (.db) unless search.storage
    tracking: TrackingConfig = TrackingConfig()

    def __post_init__(self):
        settle_kinds(self)

    def storage(self) -> str:
        return self.search.storage or sqlite_url(Path(self.out).with_suffix(".db"))

    def selection_metric(self) -> str:
        return self.metric or {"presplit": "recall_full@20"}.get(self.split.protocol, "ndcg@100")


@dataclass
class TuneResult:
    study: StudyResult
    metric: str
    out: Path
    run_id: str | None


def tune_model(spec: TuneSpec, notify: Callable[[str], None] = log.info, options: dict | None = None) -> TuneResult:
    """Search, then write ``spec.out``: ``model``, the run's ``options`` (train flags by name, as given) and
    the best hyperparameters under ``[params]``. Everything checkable is checked before the data is read."""
    try:
        model = build_model(spec.model, spec.params)  # fixed hyperparameters fail now
        model_class = type(model)
    except (TypeError, ValueError) as exc:
        raise DataError(str(exc)) from None
    _check_side_tables(spec, model)
    raw = spec.space if spec.space is not None else model_class.search_space
    space = parse_space(raw, model_class.config_class, f"search space of {model_class.name}", spec.params)
    if not space:
        raise DataError(f"{model_class.name} has nothing to search; pass a search space")
    metric = spec.selection_metric()
    parse_metric(metric)
    check_writable(spec.out, "the tuned settings")
    split, _ = prepare_split(spec.data, spec.split)
    split, fixed, item_features = _side_inputs(model, split, spec)
    tune_on = split if split.validation is not None else validation_from_training(split, spec.split.seed)
    notify(f"searching {model_class.name}: {', '.join(space)}; {spec.search.trials} trials on {len(tune_on.validation)} "
           f"validation users by {metric}; study in {spec.storage()}")
    with start_tracking(spec.tracking, f"tune-{model_class.name}") as tracker:
        tracker.log_params({"model": model_class.name, "fixed": spec.params, "space": raw,
                            "search": dataclasses.asdict(spec.search), "data": spec.data.to_json(),
                            "split": spec.split.to_json()})

        def trial_model(params):  # scored and thrown away: no mixture over its users
            return build_model(spec.model, params, validation_metric=metric, describe_training_users=False)

        result = run_study(trial_model, space, fixed, tune_on.train,
                           tune_on.validation, metric, spec.search, spec.storage(), f"tune/{model_class.name}",
                           resume=True, tracker=tracker, report=lambda *a: notify(a[0] % a[1:]),
                           identity={"model": model_class.name, "data": spec.data.to_json(),
                                     "split": spec.split.to_json()}, item_features=item_features)
        tracker.log_metrics({f"best_val_{metric}": result.best_score, "trials": result.budget_used})
        pruned = sum(t["state"] == "pruned" for t in result.trials)
        header = (f"recvae tune: best validation {metric} {result.best_score:.4f} of {result.budget_used} trials "
                  f"({pruned} pruned); train from it with: recvae train --config {Path(spec.out).name}")
        write_train_config(spec.out, model_class.name, result.best_params, options or {}, header)
        tracker.log_artifact(spec.out, "tuned")
        return TuneResult(result, metric, Path(spec.out), tracker.run_id)


def _check_side_tables(spec: TuneSpec, model) -> None:
    """The side tables are the model's to read, and the widths they encode are theirs to set (before any reading)."""
    if spec.split.cold_items:
        raise ParameterError("cold_items", spec.split.cold_items, "is not searched by recvae tune: tune on the warm "
                             "users (with --item-features), then measure the cold items with recvae train --cold-items")
    check_side_tables(model, spec.data, spec.split)
    for width, table in (("conditions", "users'"), ("item_feature_width", "items'")):
        if width in (spec.space or {}):
            raise ParameterError(width, spec.space[width], f"is the number of features the {table} table encodes, "
                                 "set by the table: leave it out of the search")


def _side_inputs(model, split, spec: TuneSpec):
    """The split as the model reads it (a CVAE's users' features appended), the fixed hyperparameters with the
    widths the side tables encode, and the items' features (None without a table)."""
    item_features, fixed = None, dict(spec.params)
    if spec.data.item_features is not None:  # on the items alone, before a CVAE's feature columns are appended
        item_features, encoding = encode_item_table(spec.data.item_features, split.items)
        fixed["item_feature_width"] = encoding.width
    split, users = model_split(model, split, spec.data)
    if users is not None:
        fixed["conditions"] = users.encoding.width
    return split, fixed, item_features


def _toml_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # strings, ints and finite floats read the same in TOML


NONE = "none"  # how a settings file spells a hyperparameter set to None


def _flag(name: str) -> str:
    return name.replace("_", "-")


def write_train_config(path: str | Path, model: str, params: dict, options: dict, header: str = "") -> Path:
    """A TOML file of ``recvae train`` flags: ``model``, ``options`` at the top, hyperparameters under
    ``[params]``; names as the flags spell them, without the dashes. Options that are None (their default)
    are left out; a hyperparameter that is None is written "none"."""
    lines = [f"# {line}" for line in header.splitlines()] + [f"model = {_toml_value(model.lower())}"]
    lines += [f"{_flag(k)} = {_toml_value(v)}" for k, v in options.items() if v is not None]
    # TOML has no null: a hyperparameter set to None is written "none", as its flag takes it
    params = {k: NONE if v is None else v for k, v in params.items()}
    lines += ["", "[params]"] + [f"{_flag(k)} = {_toml_value(v)}" for k, v in sorted(params.items())]
    text = "\n".join(lines) + "\n"
    expected = {"model": model.lower(), **{_flag(k): v for k, v in options.items() if v is not None},
                "params": {_flag(k): v for k, v in params.items()}}
    if json.loads(json.dumps(tomllib.loads(text))) != json.loads(json.dumps(expected)):  # never write a file that reads otherwise
        raise ValueError(f"{path}: these settings do not survive a TOML round trip: {expected}")
    write_atomic_bytes(path, text.encode())
    return Path(path)


def read_toml(path: str | Path, what: str) -> dict:
    """A TOML file the user named; ``what`` says which (e.g. "search space file ({space})")."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from None


def read_search_space(path: str | Path) -> dict:
    """A file of hyperparameter ranges: one ``[search]`` table, as a model's ``search_space`` spells them."""
    payload = read_toml(path, "search space file ({space})")
    if set(payload) != {"search"}:
        raise ValueError(f"{path}: expected one [search] table of hyperparameter ranges, found {sorted(payload)}")
    return payload["search"]


def read_train_config(path: str | Path) -> tuple[dict, dict]:
    """What ``write_train_config`` wrote: (options by flag name, hyperparameters by flag name), lists as tuples."""
    payload = read_toml(path, "config file ({flags_file})")
    params = payload.pop("params", {})
    if not isinstance(params, dict):
        raise ValueError(f"{path}: params must be a [params] table of hyperparameters")
    return payload, {k: None if v == NONE else _as_tuples(v) for k, v in params.items()}


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value
