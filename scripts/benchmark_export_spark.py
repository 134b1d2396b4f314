"""Batch top-N through Spark local[N] against `recvae recommend` on the same log.

    python scripts/benchmark_export_spark.py [--users 136000] [--items 20000] [--master local[2]] [--repeats 3]

Generates a log shaped like MovieLens-20M (Parquet), trains Mult-VAE (paper architecture) one epoch on a
sample of its users, then exports the top-N of every user with the single-machine export and with
`recvae.export.spark.export_spark`, alternately, --repeats pairs; reports the users/s of both and the
median of the per-pair ratios. Writes evaluation/perf/export_spark.md and export_spark.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recvae.environment import describe, environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=136_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--median-activity", type=float, default=52.0)
    parser.add_argument("--top-n", type=int, default=100)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="evaluation/perf")
    args = parser.parse_args()

    from pyspark.sql import SparkSession

    from recvae.data import Interactions, SyntheticLog, generate_log
    from recvae.export import export_recommendations
    from recvae.export.spark import export_spark
    from recvae.models import MultVAE

    work = Path(tempfile.mkdtemp(prefix="recvae-spark-bench-"))
    log = generate_log(SyntheticLog(n_users=args.users, n_items=args.items, median_activity=args.median_activity,
                                    string_ids=False))[["user", "item"]]
    log.to_parquet(work / "log.parquet", index=False)
    data = Interactions.from_frame(log)
    sample = np.random.default_rng(0).choice(data.n_users, size=min(20_000, data.n_users), replace=False)
    MultVAE(epochs=1).fit(data.matrix[np.sort(sample)], items=data.items).save(work / "model")
    users, interactions = data.n_users, len(log)
    del log, data
    spark = SparkSession.builder.master(args.master).appName("recvae export benchmark") \
        .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g").getOrCreate()
    # the first Spark job starts the Python workers and JIT paths: once, outside the timed pairs
    export_spark(str(work / "log.parquet"), str(work / "model"), str(work / "warm.parquet"), n=args.top_n)
    from recvae.models import Recommender

    model = Recommender.load(work / "model")
    pairs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        export_recommendations(model, work / "log.parquet", work / "local.parquet", n=args.top_n, progress=False)
        local = time.perf_counter() - started
        started = time.perf_counter()
        rows = export_spark(str(work / "log.parquet"), str(work / "model"), str(work / "spark.parquet"), n=args.top_n).rows
        pairs.append({"local_seconds": local, "spark_seconds": time.perf_counter() - started, "spark_rows": rows})
        print(json.dumps(pairs[-1]), file=sys.stderr, flush=True)
    spark.stop()
    median = sorted(pairs, key=lambda p: p["spark_seconds"] / p["local_seconds"])[len(pairs) // 2]
    result = {"users": users, "items": args.items, "interactions": interactions, "top_n": args.top_n,
              "master": args.master, "pairs": pairs, "local_users_per_second": users / median["local_seconds"],
              "spark_users_per_second": users / median["spark_seconds"],
              "spark_over_local": median["spark_seconds"] / median["local_seconds"], "machine": environment(),
              "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_spark.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Batch top-N through Spark", "",
        f"Generated log shaped like MovieLens-20M: {users} users, {args.items} items, {interactions} interactions "
        f"(Parquet). Mult-VAE with the paper's architecture (one epoch on {min(20_000, users):,} users). Top-{args.top_n} for every "
        f"user, history excluded, written to Parquet: `recvae recommend` (one process, blocks of 1000 users) against "
        f"`recommend --engine spark --master {args.master}` (the same block function in Spark's Python workers; "
        "Spark reads the log, shuffles it by user and writes the result). One warm-up Spark export first; then "
        f"{args.repeats} (local, Spark) pairs, the median pair by ratio reported.", "",
        "| engine | seconds | users/s |", "| --- | --- | --- |",
        f"| recvae recommend | {median['local_seconds']:.1f} | {result['local_users_per_second']:.0f} |",
        f"| Spark {args.master} | {median['spark_seconds']:.1f} | {result['spark_users_per_second']:.0f} |", "",
        f"Spark / local time: **{result['spark_over_local']:.2f}** (pairs: "
        + ", ".join(f"{p['spark_seconds'] / p['local_seconds']:.2f}" for p in pairs) + ").", "",
        f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", "",
    ]
    (out / "export_spark.md").write_text("\n".join(lines))
    print("\n".join(lines))

if __name__ == "__main__":
    main()
