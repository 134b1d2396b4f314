"""EASE at 10k, 20k and 40k items: the float64 LU inverse it used to take against the float32 Cholesky in
place it takes now, and a grid of four lambdas by one fit each against one shared eigendecomposition.

    python scripts/benchmark_ease.py [--items 10000,20000,40000] [--users 60000]

Each variant runs in a fresh process on the same generated log (long-tailed item popularity, like
MovieLens), so its peak RSS is its own; a variant whose estimated memory exceeds what the machine has is
reported as refused, not run. Writes evaluation/perf/ease.md and ease.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recvae.environment import describe, environment

GRID = (100.0, 300.0, 1000.0, 3000.0)
VARIANTS = {  # name: (items x items matrices it holds at its peak, bytes per entry)
    "float64 LU inverse (before)": (3, 8),
    "float32 Cholesky in place (now)": (1, 4),
    "grid: one fit per lambda (now)": (1, 4),
    "grid: one eigendecomposition": (3, 4),
}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no /proc/self/status")


def generated_log(n_users: int, n_items: int, seed: int = 0) -> sp.csr_matrix:
    """Users with ~60 items each, items drawn with Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    counts = rng.integers(20, 100, n_users)
    rows = np.repeat(np.arange(n_users), counts)
    cols = rng.choice(n_items, size=counts.sum(), p=popularity)
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    x.data[:] = 1.0
    return x


def run_variant(variant: str, path: str) -> dict:
    """In this (fresh) process: fit the variant on the saved log, return seconds and peak RSS."""
    import scipy.linalg
    import torch

    from recvae.models.ease import EASE, gram_matrix

    x = sp.load_npz(path).tocsr()
    started = time.perf_counter()
    if variant.startswith("float64"):
        gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
        gram.diagonal().add_(GRID[2])
        precision = torch.linalg.inv(gram)
        weights = -precision / precision.diagonal()
        weights.diagonal().zero_()
        weights = weights.float()
    elif variant.startswith("float32"):
        EASE(l2=GRID[2]).fit(x)
    elif variant.startswith("grid: one fit"):
        for l2 in GRID:
            EASE(l2=l2).fit(x)
    else:
        eigenvalues, vectors = scipy.linalg.eigh(gram_matrix(x), overwrite_a=True, check_finite=False, driver="evd")
        for l2 in GRID:
            scaled = vectors * (1.0 / np.sqrt(np.maximum(eigenvalues, 0) + l2)).astype(np.float32)
            precision = scaled @ scaled.T
            del scaled
            d = np.diag(precision).copy()
            precision /= -d[None, :]
            del precision
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="10000,20000,40000")
    parser.add_argument("--users", type=int, default=60000)
    parser.add_argument("--out", default="evaluation/perf")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(*args.child)))
        return
    from recvae.models.ease import available_memory

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_items in (int(n) for n in args.items.split(",")):
            path = f"{tmp}/log-{n_items}.npz"
            x = generated_log(args.users, n_items)
            sp.save_npz(path, x)
            for variant, (matrices, width) in VARIANTS.items():
                need_gb = matrices * n_items**2 * width / 2**30
                row = {"items": n_items, "users": args.users, "interactions": int(x.nnz), "variant": variant,
                       "estimated_gb": round(need_gb, 2)}
                if need_gb * 2**30 > 0.9 * available_memory():
                    rows.append({**row, "seconds": None, "peak_rss_mb": None, "note": "refused: would not fit"})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                done = subprocess.run([sys.executable, __file__, "--child", variant, path], capture_output=True, text=True)
                if done.returncode != 0:
                    rows.append({**row, "seconds": None, "peak_rss_mb": None, "note": done.stderr.strip()[-300:]})
                else:
                    rows.append({**row, **json.loads(done.stdout.strip().splitlines()[-1]), "note": ""})
                print(json.dumps(rows[-1]), flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    env = environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ease.json").write_text(json.dumps({"command": command, "environment": env, "grid": GRID, "rows": rows},
                                              indent=1))
    lines = ["# EASE at scale", "", f"Generated logs of {args.users:,} users (20-100 items each, Zipf-like item "
             f"popularity); one fit at lambda {GRID[2]:g}, the grid is lambda in {list(GRID)}. Each variant in a fresh "
             "process; peak RSS is the process's high-water mark.", "",
             "| items | variant | seconds | peak RSS MB | estimated matrices GB | note |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        seconds = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"
        lines.append(f"| {r['items']:,} | {r['variant']} | {seconds} | {rss} | {r['estimated_gb']} | {r['note']} |")
    lines += ["", f"Machine: {describe(env)}.", "", f"Command: `{command}`", ""]
    (out / "ease.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
