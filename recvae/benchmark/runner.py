"""Run a benchmark: for every split seed, every model is tuned on the validation users, trained,
and scored once on the test users, all through the same split and metric code."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from recvae.benchmark.config import BenchmarkConfig, ModelSpec
from recvae.data.features import encode_item_table
from recvae.errors import DataError
from recvae.evaluate import COLD_ITEM_METRICS, cold_item_baselines, evaluate, evaluate_curves
from recvae.models import CVAE, IterativeRecommender, Trainer, model_class
from recvae.models import recbole as recbole_adapter
from recvae.models.training import kept_epoch
from recvae.pipeline import prepare_split, with_side_features
from recvae.split import Split, validation_from_training
from recvae.split.conditioned import ColdItems, cold_items, heldout_with_features
from recvae.track.tracking import NullTracker, log_beta_diagnostics
from recvae.tune import run_study
from recvae.train import build_model as build_named, fit_model, validation_scorer
from recvae.train.build import RECBOLE_PREFIX
from recvae.train.auto_beta import auto_beta

log = logging.getLogger(__name__)
progress_log = logging.getLogger("recvae.progress")  # a line per step where no bar is drawn


@dataclass
class ModelRun:
    """One model on one split seed."""

    name: str
    seed: int
    params: dict  # the chosen setting, fixed hyperparameters included
    tuning: list[dict]  # every setting tried: params, validation score, seconds
    train_seconds: float  # every fit this model needed on this seed, grid included
    fit_seconds: float  # the chosen setting's fit alone
    score_seconds: float  # ranking and measuring the test users
    summary: dict[str, float]
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    history: list[dict] = field(default_factory=list)
    auto_beta: dict | None = None  # the chosen setting's AutoBetaResult.to_json()
    cold_items: dict[str, float] | None = None  # with [split] cold_items: the cold-item protocol's summary


@dataclass
class BenchmarkResult:
    config: BenchmarkConfig
    runs: list[ModelRun]
    splits: dict[int, str]  # seed -> split summary
    skipped: dict[str, str]  # model name -> why it did not run
    cold_baselines: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # seed -> name -> summary

    @property
    def expected_runs(self) -> int:
        """How many (model, seed) runs the config asks for, the models that cannot run here aside."""
        return len(self.config.split_seeds()) * (len(self.config.models) - len(self.skipped))

    def runs_of(self, name: str) -> list[ModelRun]:
        return [r for r in self.runs if r.name == name]

    @property
    def model_names(self) -> list[str]:
        return list(dict.fromkeys(r.name for r in self.runs))


def build_model(spec: ModelSpec, params: dict, selection_metric: str | None = None):
    """A fresh, unfitted model for one hyperparameter setting (``recvae.train.build_model``). A model that
    picks its epoch on validation users picks it by ``selection_metric`` (the benchmark's) unless its
    params name one, so its history holds the metric the benchmark reads. None is described (its fits are
    scored and thrown away)."""
    try:
        return build_named(spec.model, params, validation_metric=selection_metric, describe_training_users=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"model {spec.name!r}: bad hyperparameters {params} ({exc})") from None


def unavailable(spec: ModelSpec) -> str | None:
    """Why a model cannot run here (a missing optional package), or None."""
    if spec.is_recbole:
        return recbole_adapter.recbole_missing()
    return None


def _fit(model, train, validation, on_epoch, item_features=None):
    started = time.perf_counter()
    fit_model(model, train, validation, trainer=Trainer(callbacks=(on_epoch,), progress=False), item_features=item_features)
    return time.perf_counter() - started


def _fit_candidate(spec: ModelSpec, candidate: dict, tune_on: Split, on_epoch, metric: str, item_features=None):
    """Train one grid point on the tuning split: (model, the setting it ended with, seconds, auto-β)."""
    if not spec.auto_beta:  # (ModelSpec refuses auto_beta with item features)
        model = build_model(spec, candidate, metric)
        return model, candidate, _fit(model, tune_on.train, tune_on.validation, on_epoch, item_features), None
    started = time.perf_counter()
    config = build_model(spec, candidate, metric).config
    chosen = auto_beta(config, tune_on.train, validation_scorer(tune_on.validation, config.validation_metric),
                       callbacks=(on_epoch,), progress=False)
    final = chosen.model.config
    params = {**candidate, **{k: getattr(final, k) for k in ("beta_schedule", "beta_cap", "total_anneal_steps")}}
    return chosen.model, params, time.perf_counter() - started, chosen.to_json()


def _grid_tuning(spec: ModelSpec, tune_on: Split, seed: int, config: BenchmarkConfig, on_fit, on_epoch, report,
                 item_features=None):
    """Every grid point (one without a grid) on the tuning split; the best by validation."""
    best, best_score, tuning, train_seconds = None, -np.inf, [], 0.0
    for candidate in spec.candidates():
        model, setting, seconds, chosen_beta = _fit_candidate(spec, candidate, tune_on, on_epoch, config.selection_metric,
                                                              item_features)
        score = evaluate(model, tune_on.validation, (config.selection_metric,)).mean(config.selection_metric)
        train_seconds += seconds
        tuning.append({"params": setting, f"val_{config.selection_metric}": score, "seconds": seconds,
                       **({"auto_beta": chosen_beta} if chosen_beta else {})})
        report("%s seed %d %s: validation %s %.4f (%.1f s)", spec.name, seed, setting, config.selection_metric, score, seconds)
        if best is None or score > best_score:
            best, best_score, params, fit_seconds, auto_beta = model, score, setting, seconds, chosen_beta
        on_fit()
    return best, params, tuning, train_seconds, fit_seconds, auto_beta


def _study_tuning(spec: ModelSpec, tune_on: Split, seed: int, config: BenchmarkConfig, on_fit, on_epoch, report,
                  tracker, storage: str, resume: bool, chosen: dict | None, item_features=None):
    """An Optuna study over the model's space on the tuning split; with ``chosen`` (seeds = "first", a later
    seed) no study: the first seed's choice, fitted once."""
    metric = config.selection_metric
    if chosen is not None:
        model = build_model(spec, chosen, metric)
        seconds = _fit(model, tune_on.train, tune_on.validation, on_epoch, item_features)
        on_fit()
        return model, chosen, [], seconds, seconds, None
    study = run_study(lambda params: build_model(spec, params, metric), spec.space(), spec.params, tune_on.train,
                      tune_on.validation, metric, config.search, storage, f"{config.dataset}/{spec.name}/seed {seed}",
                      resume=resume, tracker=tracker, report=report,
                      identity={"model": spec.model, "data": _data_read_by(spec, config),
                                "split": config.split.to_json(), "seed": seed}, item_features=item_features)
    on_fit()
    tuning = [{"params": t["params"], f"val_{metric}": t["value"], "last": t["last"], "state": t["state"],
               "epochs": t["epochs"], "seconds": t["seconds"]} for t in study.trials]
    model, train_seconds = study.model, study.seconds
    fit_seconds = next(t["seconds"] for t in study.trials if t["params"] == study.best_params and t["value"] == study.best_score)
    if model is None:  # the best trial ran in an earlier, interrupted process: fit its setting again
        model = build_model(spec, study.best_params, metric)
        fit_seconds = _fit(model, tune_on.train, tune_on.validation, on_epoch, item_features)
        train_seconds += fit_seconds
    return model, study.best_params, tuning, train_seconds, fit_seconds, None


def _data_read_by(spec: ModelSpec, config: BenchmarkConfig) -> dict:
    """The data spec as ``spec``'s model reads it: the users' side table only where it is a CVAE, the items'
    only where the entry asks for it (so that naming a table for new entries leaves the other models' studies
    resumable)."""
    unread = {"user_features", "user_columns"} if not _conditional(spec) else set()
    unread |= {"item_features"} if not spec.item_features else set()
    return {k: v for k, v in config.data.to_json().items() if k not in unread}


class _SeedInputs:
    """What each entry reads on one split seed: the split (a CVAE's with the users' side features appended),
    its spec with the widths the side tables encode, the items' side features where it asks for them, and
    with ``[split] cold_items`` the cold-item protocol's test users as the entry reads them. Each table is
    read once a seed, when an entry first needs it."""

    def __init__(self, config: BenchmarkConfig, split: Split, seed: int):
        self.config, self.seed, self.cold = config, seed, None
        if config.split.cold_items:
            self.cold = cold_items(split, config.split.cold_items, seed)
            split = self.cold.split
        self.split, self._conditioned, self._items, self._baselines = split, None, None, None

    def item_features(self):
        """The items' encoded side features and their encoding (read at the first call)."""
        if self._items is None:
            self._items = encode_item_table(self.config.data.item_features, self.split.items)
        return self._items

    def for_model(self, spec: ModelSpec):
        seen, params, item_features = self.split, dict(spec.params), None
        if spec.item_features:
            item_features, encoding = self.item_features()
            params["item_feature_width"] = encoding.width
        cold = self.cold
        if _conditional(spec):
            self._conditioned = self._conditioned or with_side_features(self.split, self.config.data)
            seen, params["conditions"] = self._conditioned[0], self._conditioned[1].encoding.width
            if cold is not None:  # its test users as a CVAE reads them, with their features
                cold = dataclasses.replace(cold, test=heldout_with_features(cold.test, self._conditioned[1].rows))
        return seen, dataclasses.replace(spec, params=params), item_features, cold

    def cold_baselines(self) -> dict[str, dict[str, float]]:
        """The cold-item protocol's baselines on this seed (content similarity, chance); none without it."""
        if self.cold is None:
            return {}
        if self._baselines is None:
            ranked = cold_item_baselines(self.cold, self.item_features()[0], seed=self.seed)
            self._baselines = {name: result.summary() for name, result in ranked.items()}
        return self._baselines


def _conditional(spec: ModelSpec) -> bool:
    """Whether the model reads the users' side features (a CVAE)."""
    return not spec.model.startswith(RECBOLE_PREFIX) and model_class(spec.model) is CVAE


def run_model(spec: ModelSpec, split: Split, seed: int, config: BenchmarkConfig, on_fit=lambda: None, on_epoch=lambda r: None,
              report=log.info, tracker=None, storage: str | None = None, resume: bool = False,
              chosen: dict | None = None, item_features=None, cold: ColdItems | None = None) -> ModelRun:
    """Tune ``spec`` on the split's validation users (its grid, or with ``config.search`` an Optuna study kept
    in ``storage``), then score its test users once. ``item_features``: the items' encoded side features,
    which every fit of a model that reads them is given. ``cold``: the cold-item protocol ``split`` comes
    from (its test users as the model reads them), whose cold items the test users rank too."""
    tune_on = split if split.validation is not None else validation_from_training(split, seed)
    if config.search is not None and spec.space():
        model, params, tuning, train_seconds, fit_seconds, auto_beta = _study_tuning(
            spec, tune_on, seed, config, on_fit, on_epoch, report, tracker, storage, resume, chosen, item_features)
    else:
        model, params, tuning, train_seconds, fit_seconds, auto_beta = _grid_tuning(
            spec, tune_on, seed, config, on_fit, on_epoch, report, item_features)
    if tune_on is not split:
        # Refit on all training users; an early-stopped model keeps the epoch count validation chose.
        final = dict(params)
        kept = kept_epoch(model.history_, config.selection_metric) if isinstance(model, IterativeRecommender) else None
        if kept is not None:
            final.update(epochs=int(kept["epoch"]), patience=None)
        model = build_model(spec, final, config.selection_metric)
        fit_seconds = _fit(model, split.train, None, on_epoch, item_features)
        train_seconds += fit_seconds
    started = time.perf_counter()
    result = evaluate(model, split.test, config.metrics)
    curves = evaluate_curves(model, split.test, config.curve_k)
    cold_summary = (evaluate(model, cold.test, COLD_ITEM_METRICS, allowed_items=cold.items).summary()
                    if cold is not None else None)
    score_seconds = time.perf_counter() - started
    return ModelRun(
        name=spec.name, seed=seed, params=params, tuning=tuning, train_seconds=train_seconds,
        fit_seconds=fit_seconds, score_seconds=score_seconds, summary=result.summary(), users=result.users,
        per_user=result.per_user, curves=curves, history=list(getattr(model, "history_", []) or []),
        auto_beta=auto_beta, cold_items=cold_summary,
    )


def runnable_models(config: BenchmarkConfig) -> tuple[list[ModelSpec], dict[str, str]]:
    """The models that can run here, and why the others cannot; bad hyperparameters fail now, not after an
    hour of other models."""
    skipped = {}
    for spec in config.models:
        reason = unavailable(spec)
        if reason:
            log.warning("skipping %s: %s", spec.name, reason)
            skipped[spec.name] = reason
    specs = [s for s in config.models if s.name not in skipped]
    for spec in specs:
        for params in spec.candidates():
            build_model(spec, params)
    return specs, skipped


def _studied(spec: ModelSpec, config: BenchmarkConfig) -> bool:
    return config.search is not None and bool(spec.space())


def _log_run(child, spec: ModelSpec, seed: int, run, split, config: BenchmarkConfig) -> None:
    """One (model, seed) run's MLflow child: its setting, epochs, test metrics, times, tuning and β diagnostics."""
    child.set_tags({"model": spec.name, "split.seed": seed, "dataset.fingerprint": split.fingerprint()})
    child.log_params({"model": spec.model, "params": run.params})
    for record in run.history:
        child.log_epoch(record)
    child.log_metrics(run.summary, prefix="test_")
    if run.cold_items is not None:
        child.log_metrics(run.cold_items, prefix="cold_items_")
    # run_ prefix: the epoch records already log a per-epoch train_seconds
    child.log_metrics({"run_train_seconds": run.train_seconds, "run_fit_seconds": run.fit_seconds,
                       "run_score_seconds": run.score_seconds})
    child.log_dict({"tuning": run.tuning}, "tuning.json")
    log_beta_diagnostics(child, run.history, run.auto_beta, f"{spec.name}: {config.dataset}, split seed {seed}")


def _start_seed(config: BenchmarkConfig, seed: int, tracker, report) -> tuple[Split, _SeedInputs]:
    """One split seed's split and what its entries read; the cold-item protocol's baselines logged."""
    split, _ = prepare_split(config.data, dataclasses.replace(config.split, seed=seed))
    report("seed %d: %s", seed, split.summary())
    inputs = _SeedInputs(config, split, seed)
    if inputs.cold is not None:
        report("seed %d: %d cold items; %d test users have some", seed, len(inputs.cold.items), len(inputs.cold.test))
        for name, summary in inputs.cold_baselines().items():
            tracker.log_metrics(summary, prefix=f"cold_items_{name.replace(' ', '_')}_seed{seed}_")
    return split, inputs


def _show_epoch(bar):
    """An epoch's validation figures on the progress bar."""
    def on_epoch(record):
        shown = {k: f"{v:.4f}" for k, v in record.items() if k.startswith("val_") and not k.endswith("_se")}
        bar.set_postfix(epoch=record["epoch"], **shown)
    return on_epoch


def run_benchmark(config: BenchmarkConfig, tracker=None, progress: bool | None = None, finished: dict | None = None,
                  on_run=None, storage: str | None = None, resume: bool = False,
                  restart: set[str] = frozenset(), run_missing: bool = True) -> BenchmarkResult:
    """Every model on every split seed; MLflow gets one child run per (model, seed) under ``tracker``, and
    with ``config.search`` one per trial under it.

    ``finished`` maps (model name, seed) to runs done earlier, which are taken as they are; ``on_run`` sees
    each new run and the result so far (to store it and rewrite the report). Studies live in ``storage`` (an
    Optuna database URL); ``resume`` continues the ones there instead of starting them over, but for the
    entries named in ``restart`` (changed since their studies ran). Without ``run_missing`` nothing is fitted:
    the result holds the ``finished`` runs alone (a report of what earlier runs left)."""
    finished = finished or {}
    tracker = tracker or NullTracker()
    specs, skipped = runnable_models(config)
    if config.search is not None and storage is None:
        raise ValueError("a benchmark with [search] needs storage, the database its studies are kept in")
    tracker.log_params({"benchmark": config.to_json()})
    runs, splits, cold_baselines = [], {}, {}
    first_seed = config.split_seeds()[0]
    tuned_once = config.search is not None and config.search.seeds == "first"
    first_choice = {name: run.params for (name, seed), run in finished.items() if seed == first_seed}
    fits = {s.name: 1 if _studied(s, config) else len(s.candidates()) for s in specs}
    total = config.seeds * sum(fits.values())
    show = progress if progress is not None else sys.stderr.isatty()
    report = progress_log.info if progress is None and not show else log.info
    with tqdm(total=total, desc="benchmark", unit="fit", disable=not show) as bar:
        for seed in config.split_seeds():
            split, inputs = _start_seed(config, seed, tracker, report)
            splits[seed] = split.summary()
            if inputs.cold is not None:
                cold_baselines[seed] = inputs.cold_baselines()
            for spec in specs:
                if (spec.name, seed) in finished:
                    runs.append(finished[(spec.name, seed)])
                    bar.update(fits[spec.name])
                    report("%s seed %d: finished in an earlier run, kept", spec.name, seed)
                    continue
                if not run_missing:
                    continue
                bar.set_description(f"seed {seed} · {spec.name}")
                with tracker.child(f"{spec.name} seed {seed}") as child:
                    chosen = first_choice.get(spec.name) if tuned_once and seed != first_seed else None
                    seen, read_as, item_features, cold = inputs.for_model(spec)
                    run = run_model(read_as, seen, seed, config, on_fit=lambda: bar.update(1), on_epoch=_show_epoch(bar),
                                    report=report, tracker=child, storage=storage,
                                    resume=resume and spec.name not in restart, chosen=chosen,
                                    item_features=item_features, cold=cold)
                    if seed == first_seed:
                        first_choice[spec.name] = run.params
                    _log_run(child, spec, seed, run, split, config)
                runs.append(run)
                first = config.metrics[0]
                report("%s seed %d: test %s %.4f, train %.1f s", spec.name, seed, first, run.summary[first], run.train_seconds)
                if on_run is not None:
                    on_run(run, BenchmarkResult(config=config, runs=list(runs), splits=dict(splits), skipped=skipped,
                                                cold_baselines=dict(cold_baselines)))
    return BenchmarkResult(config=config, runs=runs, splits=splits, skipped=skipped, cold_baselines=cold_baselines)
