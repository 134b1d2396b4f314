"""Peak memory of a torchrun rank: each rank reading its own users' rows against every rank reading the log.

    python scripts/benchmark_ddp_memory.py [--users 136000] [--items 2000] [--ranks 1,2,4]

Generates a log shaped like MovieLens-20M's users (Parquet), then for each world size runs
`torchrun --nproc-per-node N` of a child that reads and splits the log as `recvae train` does
(`recvae.pipeline.prepare_split` with the joined world: each rank keeps the rows of the users it owns)
and trains Mult-DAE one epoch through the Trainer; and once with 2 ranks that each read and split the
whole log first (what recvae did before, kept here as the reference). Each rank reports its peak RSS
after the split and after the epoch and the training rows it holds. The catalogue is small on purpose:
the model's own memory is the same on every rank, the data's is what changes. Writes
evaluation/perf/ddp_memory.md and ddp_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from recvae.environment import describe, environment

CHILD = "child"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(log: str, out: str, whole: bool, heldout: int) -> None:
    import torch

    from recvae.models import MultDAE
    from recvae.pipeline import DataSpec, SplitSpec, prepare_split
    from recvae.train import Trainer
    from recvae.models.training.distributed import join_world

    torch.set_num_threads(1)
    world = join_world(torch.device("cpu"))
    before = peak_rss_mb()
    split, _ = prepare_split(DataSpec(path=log), SplitSpec(heldout_users=heldout), None if whole else world)
    after_split = peak_rss_mb()
    held = split.train.matrix.nnz if hasattr(split.train, "matrix") else split.train.nnz // world.size
    model = MultDAE(epochs=1, patience=None)
    model.fit(split.train, None, split.items, trainer=Trainer(progress=False))
    row = {"rank": world.rank, "rss_start_mb": before, "rss_after_split_mb": after_split,
           "rss_after_epoch_mb": peak_rss_mb(), "training_interactions_held": int(held)}
    rows = world.gather(row)
    if world.main:
        Path(out).write_text(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=136_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--median-activity", type=float, default=52.0)
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--heldout-users", type=int, default=10_000)
    parser.add_argument("--out", default="evaluation/perf")
    parser.add_argument(f"--{CHILD}", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "whole", int(args.child[3]))
        return
    from recvae.data import SyntheticLog, generate_log

    work = Path(tempfile.mkdtemp(prefix="recvae-ddp-memory-"))
    log = generate_log(SyntheticLog(n_users=args.users, n_items=args.items, median_activity=args.median_activity,
                                    string_ids=False))[["user", "item"]]
    interactions = len(log)
    log.to_parquet(work / "log.parquet", index=False)
    del log
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    runs = [(int(n), "own users") for n in args.ranks.split(",")] + [(2, "whole log")]
    results = []
    for ranks, reading in runs:
        out = work / f"{ranks}-{reading.replace(' ', '-')}.json"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        command = [*launcher, __file__, f"--{CHILD}", str(work / "log.parquet"), str(out),
                   "whole" if reading == "whole log" else "own", str(args.heldout_users)]
        subprocess.run(command, env=env, check=True)
        rows = json.loads(out.read_text())
        results.append({"ranks": ranks, "reading": reading, "per_rank": rows})
        print(f"{ranks} rank(s), {reading}: peak RSS after split "
              f"{max(r['rss_after_split_mb'] for r in rows):.0f} MB, after one epoch "
              f"{max(r['rss_after_epoch_mb'] for r in rows):.0f} MB", file=sys.stderr, flush=True)
    result = {"users": args.users, "items": args.items, "heldout_users": args.heldout_users, "interactions": interactions, "runs": results,
              "machine": environment(), "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ddp_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ddp_memory.md").write_text(markdown(result))
    print((out / "ddp_memory.md").read_text())


def markdown(result: dict) -> str:
    lines = [
        "# Memory of a torchrun rank",
        "",
        f"Generated log: {result['users']} users, {result['items']} items, {result['interactions']} interactions "
        f"(Parquet). Each rank reads and splits it as `recvae train` does (strong generalization, "
        f"{result['heldout_users']} + {result['heldout_users']} held-out users), then trains Mult-DAE (paper architecture) one epoch, one torch thread per rank, "
        "and describes its training users as `fit` does (each rank encodes and scores its share of up to 20,000 "
        "users; every rank fits scikit-learn's Gaussian mixture to all their codes and takes their anomaly-score "
        "quantiles: what `sample` and `score-users` read). "
        "Peak RSS is the largest over the ranks; it includes Python, torch and the model (the same on every rank).",
        "",
        "| ranks | each rank reads | training interactions a rank holds | peak RSS after the split, MB | "
        "peak RSS after one epoch and the description, MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in result["runs"]:
        rows = run["per_rank"]
        lines.append(f"| {run['ranks']} | {run['reading']} | {max(r['training_interactions_held'] for r in rows)} | "
                     f"{max(r['rss_after_split_mb'] for r in rows):.0f} | {max(r['rss_after_epoch_mb'] for r in rows):.0f} |")
    lines += ["", f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
