"""scripts/compare_results.py: two benchmark results' models paired over their common split seeds."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recvae.errors import DataError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_results.py"
spec = importlib.util.spec_from_file_location("compare_results", SCRIPT)
compare_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_results)


def _result(model: str, values: dict[int, float], splits: dict[int, str] | None = None) -> dict:
    splits = splits or {seed: f"split {seed}" for seed in values}
    return {"runs": [{"model": model, "seed": seed, "ndcg@100": value} for seed, value in values.items()],
            "splits": {str(seed): text for seed, text in splits.items()}}


def test_the_difference_is_paired_over_the_common_seeds():
    first = _result("CVAE", {1: 0.50, 2: 0.41, 3: 0.47})
    second = _result("MultVAE", {1: 0.48, 2: 0.40, 3: 0.44, 4: 0.30})  # seed 4 is the second's alone
    (row,) = compare_results.compare(first, "CVAE", second, "MultVAE", ["ndcg@100"])
    assert row["split_seeds"] == [1, 2, 3]
    assert row["per_seed"] == pytest.approx([0.02, 0.01, 0.03])
    assert row["mean"] == pytest.approx(0.02) and row["first"] == pytest.approx(0.46)
    assert 0 < row["p"] < 0.1  # three positive differences with little spread


def test_results_on_other_splits_or_without_the_model_are_refused():
    first = _result("CVAE", {1: 0.50, 2: 0.41})
    with pytest.raises(DataError, match="splits differently"):
        compare_results.compare(first, "CVAE", _result("MultVAE", {1: 0.4, 2: 0.4}, {1: "split 1", 2: "other"}),
                                "MultVAE", ["ndcg@100"])
    with pytest.raises(DataError, match="no model 'EASE' .*CVAE"):
        compare_results.compare(first, "EASE", first, "CVAE", ["ndcg@100"])
    with pytest.raises(DataError, match="share no split seed"):
        compare_results.compare(first, "CVAE", _result("MultVAE", {7: 0.4}), "MultVAE", ["ndcg@100"])


def test_the_command_line_reads_two_folders(tmp_path):
    for name, model, values in (("a", "CVAE", {1: 0.5, 2: 0.42}), ("b", "MultVAE", {1: 0.48, 2: 0.41})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_result(model, values)))
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "a"), "CVAE", str(tmp_path / "b"), "MultVAE",
                           "--metrics", "ndcg@100"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ndcg@100: 0.4600 vs 0.4450, +0.0150" in done.stdout, done.stdout + done.stderr
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "a"), "EASE", str(tmp_path / "b"), "MultVAE"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no model 'EASE'" in missing.stderr
