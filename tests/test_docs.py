"""The documentation: a strict MkDocs build (a broken link or a page missing from the nav fails it), reference
pages that say what the code does, and a README quickstart that runs."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _build(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, timeout=300)


def test_the_docs_build_strictly(tmp_path):
    built = _build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    with open(copy / "docs" / "guides" / "training.md", "a") as page:
        page.write("\nSee [a page that is not there](nowhere.md).\n")
    built = _build(copy, tmp_path / "site")
    assert built.returncode != 0 and "nowhere.md" in built.stderr


def test_the_reference_pages_say_what_the_code_does():
    checked = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_reference.py"), "--check"],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    models = (ROOT / "docs" / "reference" / "models.md").read_text()
    assert "| `latent_dim` | `--latent-dim` | `int` | `200` |" in models  # Mult-VAE's, from MultVAEConfig


def test_the_readme_has_two_set_up_commands_and_its_quickstart_runs(tmp_path, monkeypatch, small_log):
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up on a fresh machine")[1].split("\n## ")[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
    assert [c.strip() for c in commands] == [
        'pip install torch==2.13.0 && pip install -e . && recvae train',
        'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q',
    ]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith(commands[1].strip())
    code = re.search(r"```python\n(.*?)```", readme.split("## Quickstart")[1], flags=re.S).group(1)
    log = small_log.assign(rating=np.random.default_rng(0).integers(1, 6, len(small_log)))
    log.to_csv(tmp_path / "ratings.csv", index=False)
    log[log["user"].isin(log["user"].unique()[:5])].to_csv(tmp_path / "new_users.csv", index=False)
    monkeypatch.chdir(tmp_path)
    code = code.replace("MultVAE()", "MultVAE(epochs=2)").replace("heldout_users=600", "heldout_users=100")  # smaller, briefly
    namespace = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    recs = namespace["recs"]
    assert isinstance(recs, pd.DataFrame) and set(recs["user"]) <= set(log["user"]) and len(recs) == 5 * 10
    assert (tmp_path / "models" / "ml" / "model.json").exists()
