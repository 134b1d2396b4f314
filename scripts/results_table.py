"""The short table evaluation/README.md quotes for a benchmark folder: each model's test NDCG@100 and Recall@20
(mean ± 95% half-width over seeds), its trials on the first seed, the seconds those trials took, the chosen
setting's fit seconds (mean over seeds) and the paired NDCG@100 difference with the best model (Holm-adjusted p).

    python scripts/results_table.py evaluation/results/ml-1m

Everything comes from the folder's results.json, which ``recvae benchmark`` wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(results: dict) -> str:
    best = results["paired"]["best"]
    first = min(int(seed) for seed in results["splits"])
    search = {run["model"]: sum(t.get("seconds") or 0.0 for t in run["tuning"])
              for run in results["runs"] if run["seed"] == first}
    lines = [f"| model | NDCG@100 | Recall@20 | trials | search s | fit s | vs {best} | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in sorted(results["summary"], key=lambda row: -row["ndcg@100"]):
        name, paired = row["model"], results["paired"]["models"].get(row["model"])
        trials = f"{row['trials']}" + (f" ({row['pruned']} pruned)" if row.get("pruned") else "")
        versus = "-" if paired is None else f"{paired['ndcg@100']['mean']:.4f} (p_holm {paired['ndcg@100']['p_holm']:.3f})"
        lines.append(f"| {name} | {row['ndcg@100']:.4f} ± {row['ndcg@100_ci95']:.4f} | {row['recall@20']:.4f} ± "
                     f"{row['recall@20_ci95']:.4f} | {trials} | {search.get(name, 0.0):.0f} | {row['fit_seconds']:.0f} | "
                     f"{versus} | {row['seeds']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a benchmark's results folder (holding results.json)")
    args = parser.parse_args(argv)
    print(table(json.loads((args.folder / "results.json").read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
