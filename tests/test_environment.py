"""What a result records of the code and machine it was made on (recvae.environment)."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

import recvae.environment


def _copy_in_a_repository(root: Path):
    """recvae/environment.py in a fresh git repository (with an evaluation/ folder), imported from there."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (root / "pkg").mkdir(parents=True)
    (root / "evaluation").mkdir()
    shutil.copy(recvae.environment.__file__, root / "pkg" / "environment.py")
    (root / "evaluation" / "table.md").write_text("0.48\n")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run(git + args, check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("copied_environment", root / "pkg" / "environment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_commit_is_dirty_when_code_changed_not_when_results_were_written(tmp_path):
    module = _copy_in_a_repository(tmp_path)
    clean = module.git_commit()
    assert clean != "unknown" and not clean.endswith("+dirty")
    (tmp_path / "evaluation" / "table.md").write_text("0.49\n")  # a run's own output
    assert module.git_commit() == clean
    with open(tmp_path / "pkg" / "environment.py", "a") as code:
        code.write("# changed\n")
    assert module.git_commit() == clean + "+dirty"


def test_the_machine_names_its_cpu_generation_and_torch_kernels():
    env = recvae.environment.environment()
    assert env["torch_cpu_capability"] and env["torch_cpu_capability"] in recvae.environment.describe(env)


def test_a_scripts_results_name_the_command_machine_and_seconds(tmp_path):
    import json
    import time

    from recvae.environment import write_script_results

    write_script_results(tmp_path / "results.json", "scripts/x.py", ["--out", "a b"], time.time() - 2.0, {"n": 1})
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["command"] == "python scripts/x.py --out 'a b'"
    assert written["n"] == 1 and written["seconds"] >= 2.0 and "packages" in written["environment"]
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
