"""Does a model trained under torchrun describe its training users as well as one trained in one process?

    python scripts/torchrun_description_ml1m.py [--data ../shared/data/ml-1m/user_movie_pairs.tsv.gz]

A rank holds only its users, so a torchrun fit sums the users per history length over the ranks, and each
rank encodes and scores its share of the described training users, which every rank then describes together
(the posterior mixture and the anomaly-score quantiles). This trains Mult-VAE on ML-1M (the CLI's defaults) in one process and with `torchrun --nproc-per-node 2`,
then for each model: `recvae sample --report` (6,040 synthetic users from the mixture, measured against the real
log: TSTR, PMI correlation, item-share and history-length JSD) and `recvae score-users` over the whole log
(the percentiles of the log's users, about 80% of them training users: near uniform when the quantiles are
right). Every command runs as a user would type it and logs to MLflow (sqlite:///mlflow.db here). Writes
results.md and results.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recvae.environment import describe, environment

MODELS = {"one process": [], "torchrun, 2 processes": ["-m", "torch.distributed.run", "--standalone",
                                                       "--nproc-per-node", "2"]}


def run(argv: list[str], cwd: Path) -> float:
    """A command in ``cwd`` (one torch thread a process, as torchrun sets), its seconds; stops on failure."""
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def measure(name: str, launcher: list[str], data: Path, work: Path, tracking: list[str]) -> dict:
    folder = work / name.split(",")[0].replace(" ", "-")
    module = ["-m", "recvae"] if not launcher else [*launcher, "-m", "recvae"]
    seconds = run([*module, "-q", "train", "--data", str(data), "--out", str(folder / "model"), *tracking], work)
    run(["-m", "recvae", "-q", "sample", "--model", str(folder / "model"), "--users", "6040", "--seed", "1",
         "--out", str(folder / "synthetic.csv"), "--report", str(folder / "report"), *tracking], work)
    run(["-m", "recvae", "-q", "score-users", "--model", str(folder / "model"), "--data", str(data),
         "--out", str(folder / "scores.parquet")], work)
    report = json.loads((folder / "report" / "report.json").read_text())
    realism = next(iter(report["logs"].values()))
    percentile = np.sort(pd.read_parquet(folder / "scores.parquet")["percentile"].to_numpy())
    uniform = (np.arange(1, len(percentile) + 1)) / len(percentile)
    return {"train_seconds": seconds, **{k: realism[k] for k in ("tstr_ratio", "pmi_correlation", "item_share_jsd",
                                                               "length_jsd", "nearest_jaccard_mean")},
            "users_scored": int(len(percentile)), "share_at_least_0.99": float((percentile >= 0.99).mean()),
            "share_at_least_0.9": float((percentile >= 0.9).mean()), "median_percentile": float(np.median(percentile)),
            "ks_to_uniform": float(np.max(np.abs(percentile - uniform)))}


def markdown(result: dict) -> str:
    rows = result["models"]
    lines = ["# Describing the training users under torchrun (ML-1M)", "",
             "Mult-VAE (the CLI's defaults) trained on ML-1M in one process and under `torchrun --nproc-per-node 2` "
             "(each rank reading its own users, encoding and scoring its share of the described users; every rank fits the "
             "mixture and the score quantiles over all shares). Synthetic users: `recvae sample "
             "--users 6040 --seed 1 --report` (TSTR: EASE trained on the synthetic log, tested on the real test users, "
             "over EASE trained on the real log). Percentiles: `recvae score-users` over every user of the log.", "",
             "| model | train s | TSTR ratio | PMI r | item JSD | length JSD | nearest Jaccard | percentile >= 0.99 "
             "| >= 0.9 | median | KS to uniform |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['train_seconds']:.0f} | {m['tstr_ratio']:.3f} | {m['pmi_correlation']:.3f} | "
                     f"{m['item_share_jsd']:.4f} | {m['length_jsd']:.4f} | {m['nearest_jaccard_mean']:.3f} | "
                     f"{m['share_at_least_0.99']:.3f} | {m['share_at_least_0.9']:.3f} | {m['median_percentile']:.3f} | "
                     f"{m['ks_to_uniform']:.3f} |")
    lines += ["", f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-1m/user_movie_pairs.tsv.gz")
    parser.add_argument("--out", default="evaluation/synthetic/ml-1m-torchrun")
    args = parser.parse_args()
    data = Path(args.data).resolve()
    if not data.exists():
        raise SystemExit(f"{data}: no such file (see ../shared/data/README.md)")
    tracking = ["--tracking-uri", f"sqlite:///{Path('mlflow.db').resolve()}", "--experiment", "torchrun-description"]
    work = Path(tempfile.mkdtemp(prefix="recvae-torchrun-description-"))
    result = {"models": {name: measure(name, launcher, data, work, tracking) for name, launcher in MODELS.items()},
              "machine": environment(), "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
