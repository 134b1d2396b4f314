"""Benchmarks: every model on the same splits, metric code and tuning budget (see ``recvae benchmark``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from recvae.benchmark.config import BenchmarkConfig, ModelSpec, load_benchmark
from recvae.environment import environment
from recvae.errors import DataError
from recvae.io import check_writable
from recvae.benchmark.report import paired_comparisons, summarize, write_report
from recvae.benchmark.runner import BenchmarkResult, ModelRun, run_benchmark
from recvae.benchmark.store import RunStore
from recvae.benchmark.statistics import confidence_interval, holm, paired_over_seeds
from recvae.tune import sqlite_url


DEFAULT_OUT = "benchmark-results"


def benchmark(config: BenchmarkConfig, out: str | Path = DEFAULT_OUT, tracker=None,
              progress: bool | None = None, command: str | None = None, overwrite: bool = False,
              resume: bool = False) -> tuple[BenchmarkResult, Path]:
    """Run ``config`` and write its report under ``out/<dataset>/``; returns the result and that folder.

    The report is rewritten after every finished (model, seed) run (the plots at the end), and each run
    is kept under ``out/<dataset>/runs/``: with ``resume`` a rerun takes the finished ones as they are.
    A folder that already holds a report (committed results under evaluation/results, say) is refused
    before anything runs, unless ``overwrite`` or ``resume``."""
    folder = Path(out) / config.dataset
    if (folder / "results.md").exists() and not (overwrite or resume):
        raise DataError(f"{folder / 'results.md'} exists: pass {{overwrite=True}} to replace that report, "
                        "{resume=True} to finish it, or another output folder ({out})")
    check_writable(folder, "the benchmark report")
    env = environment()  # before the run: the commit that ran, not whatever is checked out when it ends
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    store = RunStore(folder, config)
    finished = store.start(resume)

    def on_run(run, so_far):
        store.add(run)
        write_report(so_far, out, env, command, partial=True)

    # studies beside the results, so --resume continues a killed search where it stopped
    storage = config.search.storage or sqlite_url(folder / "studies.db") if config.search is not None else None
    if storage is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if not resume and not config.search.storage:
            (folder / "studies.db").unlink(missing_ok=True)
    result = run_benchmark(config, tracker, progress, finished=finished, on_run=on_run, storage=storage, resume=resume,
                           restart=store.restarted)
    return result, write_report(result, out, env, command, tracker)


__all__ = [
    "BenchmarkConfig", "BenchmarkResult", "ModelRun", "ModelSpec", "benchmark", "confidence_interval", "environment",
    "holm", "load_benchmark", "paired_comparisons", "paired_over_seeds", "run_benchmark", "summarize", "write_report",
]
