"""Batch top-N and embeddings through Spark local[N] against `recvae recommend` and `recvae embed` on the same log.

    python scripts/benchmark_export_spark.py [--users 136000] [--items 20000] [--master local[2]] [--repeats 3]

Generates a log shaped like MovieLens-20M (Parquet), trains Mult-VAE (paper architecture) one epoch on a
sample of its users, then exports the top-N of every user with the single-machine export and with
`recvae.export.spark.export_spark`, alternately, --repeats pairs, then every user's position with `recvae embed`
on either engine likewise; reports the users/s of both and the median of the per-pair ratios per task.
Writes evaluation/perf/export_spark.md and export_spark.json.
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
    from recvae.export.embed import EmbedSpec, embed_log
    from recvae.models import Recommender

    model = Recommender.load(work / "model")
    log_file, model_dir = str(work / "log.parquet"), str(work / "model")

    def embed(engine: str) -> int:
        spec = EmbedSpec(model=model_dir, interactions=log_file, out=str(work / f"embed-{engine}.parquet"),
                         overwrite=True, engine=engine, master=args.master if engine == "spark" else None,
                         progress=False)
        return embed_log(spec).users

    tasks = {  # task -> (the local engine's run, Spark's run), each returning the rows it wrote
        "recommend": (lambda: export_recommendations(model, log_file, work / "local.parquet", n=args.top_n,
                                                     progress=False).rows,
                      lambda: export_spark(log_file, model_dir, str(work / "spark.parquet"), n=args.top_n).rows),
        "embed": (lambda: embed("local"), lambda: embed("spark")),
    }
    result = {"users": users, "items": args.items, "interactions": interactions, "top_n": args.top_n,
              "master": args.master, "tasks": {}, "machine": environment(),
              "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    for task, (local_run, spark_run) in tasks.items():
        result["tasks"][task] = timed_pairs(task, local_run, spark_run, args.repeats, users)
    spark.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_spark.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "export_spark.md").write_text(markdown(result, args))
    print(markdown(result, args))


def timed_pairs(task: str, local_run, spark_run, repeats: int, users: int) -> dict:
    """``repeats`` (local, Spark) pairs, alternately; the median pair by ratio."""
    pairs = []
    for _ in range(repeats):
        started = time.perf_counter()
        local_rows = local_run()
        local = time.perf_counter() - started
        started = time.perf_counter()
        rows = spark_run()
        pairs.append({"local_seconds": local, "spark_seconds": time.perf_counter() - started, "spark_rows": rows,
                      "local_rows": local_rows})
        print(task, json.dumps(pairs[-1]), file=sys.stderr, flush=True)
    median = sorted(pairs, key=lambda p: p["spark_seconds"] / p["local_seconds"])[len(pairs) // 2]
    return {"pairs": pairs, "local_users_per_second": users / median["local_seconds"],
            "spark_users_per_second": users / median["spark_seconds"], "local_seconds": median["local_seconds"],
            "spark_seconds": median["spark_seconds"], "spark_over_local": median["spark_seconds"] / median["local_seconds"]}


def markdown(result: dict, args) -> str:
    users, tasks = result["users"], result["tasks"]
    lines = [
        "# Batch top-N and embeddings through Spark", "",
        f"Generated log shaped like MovieLens-20M: {users} users, {args.items} items, {result['interactions']} "
        f"interactions (Parquet). Mult-VAE with the paper's architecture (one epoch on {min(20_000, users):,} users). "
        f"recommend: the top-{args.top_n} for every user, history excluded, written to Parquet: `recvae recommend` (one "
        f"process, blocks of 1000 users) against `recommend --engine spark --master {args.master}` (the same block "
        "function in Spark's Python workers; Spark reads the log, shuffles it by user and writes the result). embed: "
        "every user's posterior mean and standard deviation, `recvae embed` against `embed --engine spark`, alike. "
        f"One warm-up Spark export first; then {args.repeats} (local, Spark) pairs per task, the median pair by "
        "ratio reported.", "",
        "| task | engine | seconds | users/s |", "| --- | --- | --- | --- |",
    ]
    for task, entry in tasks.items():
        lines += [f"| {task} | recvae {task} | {entry['local_seconds']:.1f} | {entry['local_users_per_second']:.0f} |",
                  f"| {task} | Spark {args.master} | {entry['spark_seconds']:.1f} | {entry['spark_users_per_second']:.0f} |"]
    lines.append("")
    for task, entry in tasks.items():
        lines.append(f"{task}: Spark / local time **{entry['spark_over_local']:.2f}** (pairs: "
                     + ", ".join(f"{p['spark_seconds'] / p['local_seconds']:.2f}" for p in entry["pairs"]) + ").")
    lines += ["", f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
