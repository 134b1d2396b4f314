"""Hyperparameter search with Optuna: a seeded TPE sampler (a grid sampler when the space is a few
choices), pruning of models that train by epochs on their per-epoch validation score, and a study kept
in a database so a killed search resumes without repeating its finished trials.

Trials see the validation users only; choosing the setting and scoring the test users is the caller's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recvae.defaults import SEED
from recvae.errors import DataError, ParameterError, TrainingDivergedError, settle_kinds
from recvae.evaluate import evaluate
from recvae.models import Recommender
from recvae.split.base import HeldOut
from recvae.track.tracking import NullTracker
from recvae.train import Trainer, fit_model
from recvae.tune.space import Dimension, every_setting

log = logging.getLogger(__name__)

PRUNERS = ("median", "halving", "hyperband", "none")
SEED_MODES = ("first", "every")


@dataclass(frozen=True)
class SearchConfig:
    """How a search runs: ``[search]`` in a benchmark file, or ``recvae tune``'s flags."""

    trials: int = 20  # per model (and per seed with seeds = "every"); a space of fewer settings uses fewer
    seeds: str = "first"  # "first": tune on the first split seed, use its choice on every seed; "every": tune on each
    pruner: str = "median"  # stops iterative trials whose validation curve lies below the median of earlier ones
    timeout: float | None = None  # seconds per study, beside the trial budget
    storage: str | None = None  # an Optuna database URL; None: an SQLite file beside the results
    seed: int = SEED  # the sampler's

    def __post_init__(self):
        try:
            settle_kinds(self)
        except ParameterError as exc:  # a benchmark file's [search] table: its words, as DataError
            raise DataError(f"search {exc.name} {exc.problem}, not {exc.value!r}") from None
        if self.trials < 1:
            raise DataError(f"search trials must be a whole number of at least 1, not {self.trials!r}")
        if self.seeds not in SEED_MODES:
            raise DataError(f"search seeds must be one of {SEED_MODES}, not {self.seeds!r}")
        if self.pruner not in PRUNERS:
            raise DataError(f"search pruner must be one of {PRUNERS}, not {self.pruner!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise DataError(f"search timeout must be a positive number of seconds, not {self.timeout!r}")


@dataclass
class StudyResult:
    best_params: dict
    best_score: float
    trials: list[dict]  # every finished trial: number, state, params, value, epochs, seconds
    model: Recommender | None = None  # the best trial's model, when this process trained it
    seconds: float = 0.0  # training time of this process's trials

    @property
    def budget_used(self) -> int:
        return len(self.trials)


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # recvae reports each trial itself
    return optuna


def _sampler(optuna, space: dict[str, Dimension], trials: int, seed: int):
    n = every_setting(space, trials)
    if n is not None:  # every setting once, in a seeded order
        return optuna.samplers.GridSampler({k: d.grid_values() for k, d in space.items()}, seed=seed), n
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3))), trials


def _pruner(optuna, name: str):
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=5)
    if name == "hyperband":  # several halving brackets at once: less hangs on the first trials' luck
        return optuna.pruners.HyperbandPruner(min_resource=5, max_resource="auto")
    return optuna.pruners.NopPruner()


def _finished(study, optuna) -> list:
    """The trials that count towards the budget: complete, pruned, and failed by a setting that diverged (not
    a trial an interruption or another error ended: a resumed study runs another in its place)."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in done or (t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("diverged"))]


def _check_identity(study, storage: str, identity: dict) -> None:
    recorded = study.user_attrs.get("identity")
    identity = json.loads(json.dumps(identity, default=str))
    if recorded is None:
        study.set_user_attr("identity", identity)
    elif recorded != identity:
        changed = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
        raise DataError(f"{storage}: study {study.study_name!r} was run with other {', '.join(changed)}; resuming it "
                        "would mix trials of two searches: use another storage (or output file), or remove that study")


def _abandon_running(study, optuna) -> None:
    """Trials a killed process left RUNNING will never finish: mark them failed, so the budget counts
    only finished ones and they are not waited for."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)


def merge_studies(sources: list[str], target: str) -> dict[str, str]:
    """Take into ``target`` (an Optuna database URL) the studies of ``sources`` that it lacks or holds a shorter
    run of: parallel processes that each resumed a copy of one database continue different studies. Of a
    study held in several places the longest is kept when every other one's trials are its first (the same
    search, continued further there); a study whose copies part is refused, before anything is written.
    Returns each source study's name and what was done ("copied", "extended", "kept")."""
    optuna = _optuna()
    with contextlib.ExitStack() as stack:
        for storage in (*sources, target):
            stack.enter_context(_study_storage(storage))
        ours = set(optuna.get_all_study_names(target))
        places: dict[str, list[str]] = {}
        for source in sources:
            for name in optuna.get_all_study_names(source):
                places.setdefault(name, []).append(source)
        longest, actions = {}, {}
        for name, holders in places.items():
            trials = {where: _comparable_trials(optuna.load_study(study_name=name, storage=where), optuna)
                      for where in holders + ([target] if name in ours else [])}
            where, most = max(trials.items(), key=lambda item: len(item[1]))
            parted = [other for other, run in trials.items() if most[:len(run)] != run]
            if parted:
                raise DataError(f"{parted[0].removeprefix('sqlite:///')}: study {name!r} parted from the one in "
                                f"{where.removeprefix('sqlite:///')} (their trials differ, not one a continuation "
                                "of the other): remove one of the two before merging")
            longest[name] = where
            actions[name] = ("copied" if target not in trials else
                             "extended" if len(most) > len(trials[target]) else "kept")
        for name, action in actions.items():
            if action == "extended":
                optuna.delete_study(study_name=name, storage=target)
            if action != "kept":
                optuna.copy_study(from_study_name=name, from_storage=longest[name], to_storage=target)
    return actions


def _comparable_trials(study, optuna) -> list[tuple]:
    """A study's trials as two databases can compare them: a trial an interruption ended counts as unfinished
    whether its process was killed (still RUNNING) or stopped (FAIL)."""
    counted = {t.number for t in _finished(study, optuna)}
    return [(t.number, json.dumps(t.user_attrs.get("params"), sort_keys=True, default=str),
             t.state.name if t.number in counted else "unfinished", t.value if t.number in counted else None)
            for t in study.get_trials(deepcopy=False)]


def _seconds_left(study, optuna, timeout: float | None) -> float | None:
    """The study's time budget less what its finished trials took: a study resumed after an interruption
    gets no more time in all than one uninterrupted run (a trial the interruption ended is not counted: it
    runs again)."""
    if timeout is None:
        return None
    return timeout - sum(t.user_attrs.get("seconds") or 0.0 for t in _finished(study, optuna))


def _trial_record(trial) -> dict:
    """A finished trial as plain data; ``last`` is its last per-epoch validation score (a pruned trial has no value)."""
    steps = trial.intermediate_values
    state = "diverged" if trial.user_attrs.get("diverged") else trial.state.name.lower()
    return {"number": trial.number, "state": state, "params": trial.user_attrs.get("params"),
            "value": trial.value, "last": steps[max(steps)] if steps else trial.value,
            "epochs": trial.user_attrs.get("epochs"), "seconds": trial.user_attrs.get("seconds")}


def starting_setting(build: Callable[[dict], Recommender], space: dict[str, Dimension], fixed: dict) -> dict:
    """The configured setting (the model's defaults under ``fixed``) of every dimension it lies within, as Optuna
    takes it: what a study tries first, so that a search never ends below the setting it started from."""
    config = build(fixed).config
    values = {name: dimension.optuna_value(getattr(config, name)) for name, dimension in space.items()}
    return {name: value for name, value in values.items() if value is not None}


def run_study(build: Callable[[dict], Recommender], space: dict[str, Dimension], fixed: dict, train, validation: HeldOut,
              metric: str, search: SearchConfig, storage: str, study_name: str, resume: bool = True, tracker=None,
              report: Callable = log.info, identity: dict | None = None, item_features=None) -> StudyResult:
    """Search ``space`` (over the ``fixed`` hyperparameters) for the setting whose model, trained on
    ``train``, scores best on ``validation`` by ``metric``. ``build(params)`` returns an unfitted model.

    A sampled study's first trial is the configured setting (``starting_setting``: the model's defaults,
    the papers' where it has them); the sampler picks the dimensions it leaves out, and all later trials.

    The study is ``study_name`` in ``storage``: with ``resume`` its finished trials count against the
    budget (their seconds against ``search.timeout``) and the sampler learns from them; without, an existing
    study of that name is replaced.
    ``identity`` (JSON data: the data and split, say) is recorded with the study beside the space, the
    fixed hyperparameters, the metric and the search settings; a study of that name recorded with other
    ones is refused rather than mixed in. ``item_features``: what every trial's fit reads (``fit_model``'s)."""
    optuna = _optuna()
    with _study_storage(storage):
        return _run_study(optuna, build, space, fixed, train, validation, metric, search, storage, study_name, resume,
                          tracker, report, identity, item_features)


@contextlib.contextmanager
def _study_storage(storage: str):
    """A study database that cannot be read or written (not a database, read-only, a full disk) ends in one
    error naming the file and the database's own cause, not a traceback from deep in SQLAlchemy."""
    from sqlalchemy.exc import SQLAlchemyError  # optuna's storage layer

    try:
        yield
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        where = storage.removeprefix("sqlite:///")
        raise DataError(f"{where}: the study database cannot be used ({cause}); give another {storage}, or "
                        "remove a damaged file to start the study over") from None


def _run_study(optuna, build, space, fixed, train, validation, metric, search, storage, study_name, resume, tracker,
               report, identity, item_features) -> StudyResult:
    study, budget = _open_study(optuna, build, space, fixed, metric, search, storage, study_name, resume, identity)
    objective = _Objective(optuna, build, space, fixed, train, validation, metric, study_name, tracker or NullTracker(),
                           item_features)

    def progress(study, trial):
        done = len(_finished(study, optuna))
        state = ("pruned" if trial.state == optuna.trial.TrialState.PRUNED else
                 "diverged" if trial.user_attrs.get("diverged") else f"{metric} {trial.value:.4f}")
        try:
            so_far = f"best {study.best_value:.4f}"
        except ValueError:  # every trial so far pruned
            so_far = "no trial complete yet"
        report("%s: trial %d (%d of %d): %s, %s (%.1f s)", study_name, trial.number, done, budget, state, so_far,
               trial.user_attrs.get("seconds") or 0.0)

    remaining, seconds = budget - len(_finished(study, optuna)), _seconds_left(study, optuna, search.timeout)
    if remaining > 0 and seconds is not None and seconds <= 0:
        report("%s: its %.0f s are spent (%d of %d trials): no more trials", study_name, search.timeout,
               budget - remaining, budget)
    elif remaining > 0:
        # a diverged setting fails its trial and the study goes on; any other error ends the study
        study.optimize(objective, n_trials=remaining, timeout=seconds, callbacks=(progress,),
                       catch=(TrainingDivergedError,))
    complete = [t for t in _finished(study, optuna) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise DataError(f"{study_name}: no trial completed (all {budget} pruned or diverged); use pruner = \"none\" "
                        "or narrow the search space")
    chosen = max(complete, key=lambda t: t.value)
    model = objective.best_model if objective.best_model is not None and objective.best_score == chosen.value else None
    return StudyResult(best_params=dict(chosen.user_attrs["params"]), best_score=float(chosen.value),
                       trials=[_trial_record(t) for t in _finished(study, optuna)], model=model, seconds=objective.seconds)


def _open_study(optuna, build, space: dict[str, Dimension], fixed: dict, metric: str, search: SearchConfig,
                storage: str, study_name: str, resume: bool, identity: dict | None):
    """The study (resumed, or replaced without ``resume``; refused when recorded with another identity) and
    its budget of trials; a new sampled study's first trial is the starting setting."""
    sampler, budget = _sampler(optuna, space, search.trials, search.seed)
    if not resume:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
        except KeyError:
            pass
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", sampler=sampler,
                                pruner=_pruner(optuna, search.pruner), load_if_exists=True)
    _check_identity(study, storage, {"space": {k: dataclasses.asdict(d) for k, d in space.items()}, "fixed": fixed,
                                     "metric": metric, "pruner": search.pruner, "sampler_seed": search.seed,
                                     **(identity or {})})  # a larger budget may resume a study
    _abandon_running(study, optuna)
    earlier = len(study.get_trials(deepcopy=False))
    if not isinstance(sampler, optuna.samplers.GridSampler):  # a grid sampler skips the points already run
        if not earlier:
            study.enqueue_trial(starting_setting(build, space, fixed), skip_if_exists=True)
        else:  # a sampler seeded as the first process's would draw its settings again: seeded by the trials so far
            study.sampler = _sampler(optuna, space, search.trials, search.seed + earlier)[0]
    return study, budget


def _mark_diverged(trial, child) -> None:
    """A trial whose setting diverged: so recorded in the study (``_finished`` counts it) and in MLflow."""
    trial.set_user_attr("diverged", True)
    child.set_tags({"trial.state": "diverged"})


class _Objective:
    """One trial: build the setting's model, train it (validation each epoch is reported to the pruner), score
    it on the validation users; every trial an MLflow child run. Keeps the best model it trained."""

    def __init__(self, optuna, build, space, fixed, train, validation: HeldOut, metric: str, study_name: str, tracker,
                 item_features=None):
        self.optuna, self.build, self.space, self.fixed, self.item_features = optuna, build, space, fixed, item_features
        self.train, self.validation, self.metric, self.study_name, self.tracker = train, validation, metric, study_name, tracker
        self.best_score, self.best_model, self.seconds = -math.inf, None, 0.0

    def __call__(self, trial) -> float:
        params = {**self.fixed, **{name: dimension.suggest(trial) for name, dimension in self.space.items()}}
        trial.set_user_attr("params", params)
        model = self.build(params)
        started = time.perf_counter()
        pruned = None
        with self.tracker.child(f"trial {trial.number}") as child:  # a pruned trial is a FINISHED run, tagged pruned
            child.log_params({"params": params})
            child.set_tags({"trial.number": trial.number, "study": self.study_name})
            try:
                fit_model(model, self.train, self.validation, item_features=self.item_features,
                          trainer=Trainer(callbacks=(self._on_epoch(trial, child),), progress=False))
            except self.optuna.TrialPruned as exc:
                pruned = exc
            except TrainingDivergedError:
                _mark_diverged(trial, child)
                raise
            finally:
                self.seconds += time.perf_counter() - started
                trial.set_user_attr("seconds", time.perf_counter() - started)
            child.set_tags({"trial.state": "pruned" if pruned else "complete"})
            if not pruned:
                score = evaluate(model, self.validation, (self.metric,)).mean(self.metric)
                if not math.isfinite(score):
                    _mark_diverged(trial, child)
                    raise TrainingDivergedError(f"{self.study_name}: trial {trial.number} scored {score} on the "
                                                f"validation users ({params})")
                child.log_metrics({"objective": score})  # the score the study ranks (val_* are per epoch)
        if pruned:
            raise pruned
        if score > self.best_score:
            self.best_score, self.best_model = score, model
        return score

    def _on_epoch(self, trial, child):
        def on_epoch(record):
            child.log_epoch(record)
            value = record.get(f"val_{self.metric}")
            if value is None:
                return
            trial.report(value, record["epoch"])
            trial.set_user_attr("epochs", record["epoch"])
            if trial.should_prune():
                raise self.optuna.TrialPruned(f"epoch {record['epoch']}: validation {self.metric} {value:.4f}")
        return on_epoch


def best_score_curve(trials: list[dict]) -> list[float]:
    """The best validation score after each finished trial, in trial order (NaN before the first completes)."""
    curve, best = [], -math.inf
    for trial in sorted(trials, key=lambda t: t["number"]):
        if trial["state"] == "complete" and trial["value"] is not None:
            best = max(best, trial["value"])
        curve.append(best if best > -math.inf else float("nan"))
    return curve


