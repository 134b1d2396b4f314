"""Throughput of ``recvae embed`` beside ``recvae recommend`` on the same log and model.

    python scripts/benchmark_embed.py [--users 136000] [--items 20000] [--repeats 3] [--out evaluation/perf]

On a generated log shaped like MovieLens-20M (the export benchmark's), Mult-VAE with the paper's architecture is
trained for one epoch on a sample of users; then, in one process, pairs of (embed every user, export every
user's top 100) are timed, the order alternating. Embedding is the encoder alone, so it should be faster
than the export (encoder, decoder over the whole catalogue, top-N). Writes embed.md and embed.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from recvae.data import Interactions, SyntheticLog, generate_log
from recvae.environment import describe, environment
from recvae.export.command import RecommendSpec, recommend_log
from recvae.export.embed import EmbedSpec, embed_log
from recvae.models import MultVAE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=136_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="evaluation/perf")
    args = parser.parse_args()
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        log = generate_log(SyntheticLog(n_users=args.users, n_items=args.items, median_activity=52.0, seed=0,
                                        string_ids=False))[["user", "item"]]
        path = Path(tmp) / "log.parquet"
        log.to_parquet(path)
        data = Interactions.from_frame(log)
        model_dir = Path(tmp) / "model"
        MultVAE(epochs=1, patience=None).fit(data.matrix[: args.users // 4], items=data.items).save(model_dir)
        say(f"log of {len(log)} interactions; model trained")
        pairs = []
        for repeat in range(args.repeats):
            times = {}
            for what in (("embed", "export") if repeat % 2 == 0 else ("export", "embed")):
                started = time.perf_counter()
                if what == "embed":
                    embed_log(EmbedSpec(model=str(model_dir), interactions=str(path), out=f"{tmp}/users.parquet",
                                        overwrite=True))
                else:
                    recommend_log(RecommendSpec(model=str(model_dir), interactions=str(path), out=f"{tmp}/top.parquet",
                                                progress=False, overwrite=True))
                times[what] = time.perf_counter() - started
            say(f"pair {repeat + 1}: embed {times['embed']:.1f} s, export {times['export']:.1f} s")
            pairs.append(times)
    ratios = [p["export"] / p["embed"] for p in pairs]
    result = {"users": args.users, "items": args.items, "interactions": len(log), "pairs": pairs,
              "median_embed_seconds": statistics.median(p["embed"] for p in pairs),
              "median_export_seconds": statistics.median(p["export"] for p in pairs),
              "median_export_over_embed": statistics.median(ratios), "machine": environment(),
              "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    (out / "embed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Embedding throughput beside the export", "",
             f"{args.users} generated users x {args.items} items ({len(log)} interactions), Mult-VAE with the paper's "
             f"architecture; {args.repeats} pairs in one process, the order alternating.", "",
             "| | median s | users / s |", "| --- | --- | --- |",
             f"| embed (posterior mean and std of every user) | {result['median_embed_seconds']:.1f} | "
             f"{args.users / result['median_embed_seconds']:.0f} |",
             f"| export (top 100 of every user) | {result['median_export_seconds']:.1f} | "
             f"{args.users / result['median_export_seconds']:.0f} |", "",
             f"The export takes **{result['median_export_over_embed']:.2f}x** the embedding's time (median of the pairs' "
             f"ratios: {', '.join(f'{r:.2f}' for r in ratios)}).", "",
             f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", ""]
    (out / "embed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
