"""How long the command line takes to answer --help, beside a bare Python start on the same machine.

    python scripts/benchmark_cli.py [--repeats 7] [--out evaluation/perf]

Each repeat runs, one after the other, ``python -c pass``, ``python -m recvae --help`` and
``python -m recvae train --help`` in fresh processes; the medians are reported (the target is under 1 s
for both helps). Writes cli.md and cli.json under --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from recvae.environment import describe, environment

COMMANDS = {"python -c pass": ["-c", "pass"], "recvae --help": ["-m", "recvae", "--help"],
            "recvae train --help": ["-m", "recvae", "train", "--help"]}


def seconds(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="evaluation/perf")
    args = parser.parse_args()
    for arguments in COMMANDS.values():  # warm the file cache once: the first start of a session reads from disk
        seconds(arguments)
    runs = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, arguments in COMMANDS.items():
            runs[name].append(seconds(arguments))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    result = {"medians": medians, "runs": runs, "repeats": args.repeats, "machine": environment(),
              "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    out = Path(args.out)
    (out / "cli.json").write_text(json.dumps(result, indent=2) + "\n")
    floor = medians["python -c pass"]
    lines = ["# Command-line start-up", "",
             f"Median of {args.repeats} runs of each, in fresh processes, interleaved. Target: under 1 s for both helps.",
             "", "| command | median s | above a bare Python start, s |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {value:.2f} | {value - floor:.2f} |" for name, value in medians.items()]
    lines += ["", f"Machine: {describe(result['machine'])}.", "", f"Command: `{result['command']}`", ""]
    (out / "cli.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
