"""The machine, software and code a result was measured on: saved with every result file and MLflow run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("recvae", "torch", "numpy", "scipy", "pandas", "implicit", "recbole", "mlflow", "threadpoolctl", "numba")


def _cpu() -> str:
    """The CPU's name with its family and model numbers: one name ("AMD EPYC") covers generations whose
    vector units differ, and with them the float rounding a trained model's trajectory depends on."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def git_commit() -> str:
    """The commit of recvae's own checkout (not the caller's directory), with ``+dirty`` when its
    tracked files outside evaluation/ differ from it; "unknown" for an installed copy outside git."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        # results under evaluation/ are what a run writes, not the code it ran: a script that records its
        # environment after writing its first figures would otherwise call its own clean clone dirty
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)evaluation")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment() -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # the kernels torch picked (AVX2, AVX512, ...): the same seed trains to other figures under others
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": git_commit(),
    }


def describe(env: dict) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    kernels = f" ({env['torch_cpu_capability']} kernels)" if env.get("torch_cpu_capability") else ""
    return (f"{env['cpu']}, {env['cores']} cores, {env['torch_threads']} torch threads{kernels}; Python {env['python']}; "
            f"{packages}; commit {env['git_commit']}")


def write_script_results(path: str | Path, script: str, argv: list[str] | None, started: float, results: dict) -> None:
    """A script's ``results.json``: the command that made it (``script`` with ``argv``, None: this process's
    flags), the machine, the seconds since ``started`` (``time.time()``), then ``results``; whole or not at all."""
    from recvae.io import write_atomic_json

    flags = argv if argv is not None else sys.argv[1:]
    write_atomic_json(path, {"command": "python " + shlex.join([script, *flags]), "environment": environment(),
                             "seconds": time.time() - started, **results})
