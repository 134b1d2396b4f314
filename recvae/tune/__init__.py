"""Hyperparameter search (Optuna): search spaces, studies with pruning and a resumable store."""

from recvae.tune.space import Dimension, combinations, parse_dimension, parse_space
from recvae.tune.command import TuneResult, TuneSpec, tune_model, write_train_config
from recvae.tune.study import (PRUNERS, SEED_MODES, SearchConfig, StudyResult, best_score_curve, merge_studies, run_study,
                               sqlite_url)

__all__ = [
    "PRUNERS", "SEED_MODES", "Dimension", "SearchConfig", "StudyResult", "best_score_curve", "combinations", "merge_studies",
    "TuneResult", "TuneSpec", "parse_dimension", "parse_space", "run_study", "sqlite_url", "tune_model",
    "write_train_config",
]
