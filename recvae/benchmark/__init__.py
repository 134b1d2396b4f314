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
from recvae.benchmark.statistics import confidence_interval, holm, paired_difference


DEFAULT_OUT = "benchmark-results"


def benchmark(config: BenchmarkConfig, out: str | Path = DEFAULT_OUT, tracker=None,
              progress: bool | None = None, command: str | None = None, overwrite: bool = False) -> tuple[BenchmarkResult, Path]:
    """Run ``config`` and write its report under ``out/<dataset>/``; returns the result and that folder.

    A folder that already holds a report (committed results under evaluation/results, say) is refused
    before anything runs, unless ``overwrite``."""
    existing = Path(out) / config.dataset / "results.md"
    if existing.exists() and not overwrite:
        raise DataError(f"{existing} exists: pass --force (overwrite=True) to replace that report, or another --out")
    check_writable(Path(out) / config.dataset, "the benchmark report")
    env = environment()  # before the run: the commit that ran, not whatever is checked out when it ends
    result = run_benchmark(config, tracker, progress)
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    folder = write_report(result, out, env, command, tracker)
    return result, folder


__all__ = [
    "BenchmarkConfig", "BenchmarkResult", "ModelRun", "ModelSpec", "benchmark", "confidence_interval", "environment",
    "holm", "load_benchmark", "paired_comparisons", "paired_difference", "run_benchmark", "summarize", "write_report",
]
