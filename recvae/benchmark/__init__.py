"""Benchmarks: every model on the same splits, metric code and tuning budget (see ``recvae benchmark``)."""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from recvae.benchmark.config import BenchmarkConfig, ModelSpec, load_benchmark
from recvae.environment import environment
from recvae.errors import DataError
from recvae.io import check_writable
from recvae.benchmark.report import paired_comparisons, summarize, write_report
from recvae.benchmark.runner import BenchmarkResult, ModelRun, run_benchmark
from recvae.benchmark.store import RunStore
from recvae.benchmark.statistics import confidence_interval, holm, paired_over_seeds
from recvae.tune import merge_studies, sqlite_url

log = logging.getLogger(__name__)


DEFAULT_OUT = "benchmark-results"


def benchmark(config: BenchmarkConfig, out: str | Path = DEFAULT_OUT, tracker=None,
              progress: bool | None = None, command: str | None = None, overwrite: bool = False,
              resume: bool = False, merge: Sequence[str | Path] = ()) -> tuple[BenchmarkResult, Path]:
    """Run ``config`` and write its report under ``out/<dataset>/``; returns the result and that folder.

    The report is rewritten after every finished (model, seed) run (the plots at the end), and each run
    is kept under ``out/<dataset>/runs/``: with ``resume`` a rerun takes the finished ones as they are.
    A folder that already holds a report (committed results under evaluation/results, say) is refused
    before anything runs, unless ``overwrite`` or ``resume``.

    ``merge`` names other output folders of this benchmark (parallel processes' ``models`` subsets, say):
    their finished runs and their studies are taken into this folder and the report is rewritten from all
    it holds; nothing is fitted (``resume`` afterwards finishes what is missing). Two different runs of one
    (model, seed), or two studies of one name that parted, are refused before anything is written."""
    if not isinstance(config, BenchmarkConfig):
        raise TypeError(f"config must be a BenchmarkConfig, not {type(config).__name__} (load_benchmark(path) reads "
                        "one from a benchmark file)")
    folder = Path(out) / config.dataset
    if (folder / "results.md").exists() and not (overwrite or resume or merge):
        raise DataError(f"{folder / 'results.md'} exists: pass {{overwrite=True}} to replace that report, "
                        "{resume=True} to finish it, or another output folder ({out})")
    check_writable(folder, "the benchmark report")
    env = environment()  # before the run: the commit that ran, not whatever is checked out when it ends
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    store = RunStore(folder, config)
    finished = store.start(resume or bool(merge))

    def on_run(run, so_far):
        store.add(run)
        write_report(so_far, out, env, command, partial=True)

    # studies beside the results, so --resume continues a killed search where it stopped
    storage = config.search.storage or sqlite_url(folder / "studies.db") if config.search is not None else None
    if storage is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if not (resume or merge) and not config.search.storage:
            (folder / "studies.db").unlink(missing_ok=True)
    if merge:
        sources = [_dataset_folder(source, config.dataset) for source in merge]
        taken = _runs_to_merge(config, folder, sources, finished)
        if storage is not None and not config.search.storage:
            studies = [source / "studies.db" for source in sources]
            done = merge_studies([sqlite_url(path) for path in studies if path.exists()], storage)
            log.info("studies merged: %s", ", ".join(f"{k} {v}" for k, v in done.items()) or "none")
        for run in taken.values():
            store.add(run)
        finished = {**finished, **taken}
    result = run_benchmark(config, tracker, progress, finished=finished, on_run=on_run, storage=storage, resume=resume,
                           restart=store.restarted, run_missing=not merge)
    return result, write_report(result, out, env, command, tracker, partial=len(result.runs) < result.expected_runs)


def _dataset_folder(out: str | Path, dataset: str) -> Path:
    """A benchmark's folder given as its --out (holding <dataset>/) or as itself."""
    for folder in (Path(out) / dataset, Path(out)):
        if (folder / "runs" / "benchmark.json").exists():
            return folder
    raise DataError(f"{out}: no finished runs of {dataset} there (looked for {Path(out) / dataset / 'runs'} and "
                    f"{Path(out) / 'runs'})")


def _runs_to_merge(config: BenchmarkConfig, folder: Path, sources: list[Path], finished: dict) -> dict:
    """The runs of ``sources`` (benchmark folders) this folder lacks, for this config's entries; a (model, seed)
    two folders hold with other settings or figures is refused."""
    names = {m.name for m in config.models}
    taken, held_in = {}, {key: folder for key in finished}
    for where in sources:
        if where.resolve() == folder.resolve():
            raise DataError(f"{where}: is the output folder itself; merge other folders into it")
        for key, run in RunStore(where, config).read().items():
            if key[0] not in names:
                continue
            held = finished.get(key) or taken.get(key)
            if held is None:
                taken[key], held_in[key] = run, where
            elif held.params != run.params or held.summary != run.summary:
                raise DataError(f"{where / 'runs'}: {key[0]} seed {key[1]} differs from the run in "
                                f"{held_in[key] / 'runs'} (setting or test figures): remove one of the two")
    return taken


__all__ = [
    "BenchmarkConfig", "BenchmarkResult", "ModelRun", "ModelSpec", "benchmark", "confidence_interval", "environment",
    "holm", "load_benchmark", "paired_comparisons", "paired_over_seeds", "run_benchmark", "summarize", "write_report",
]
