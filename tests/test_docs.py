"""The documentation: a strict MkDocs build (a broken link or a page missing from the nav fails it), reference
pages that say what the code does, and a README quickstart that runs."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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


def test_the_readme_has_two_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up on a fresh machine")[1].split("\n## ")[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
    assert [c.strip() for c in commands] == [
        'pip install torch==2.13.0 && pip install -e . && recvae train',
        'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q',
    ]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith(commands[1].strip())


# The pages whose code runs, in the order a reader meets them (the README, then the site's nav): a page may
# use what an earlier one made (a model, an MLflow run).
PAGES = ["README.md"] + [f"docs/{page}" for page in re.findall(r":\s*(guides/\S+\.md)", (ROOT / "mkdocs.yml").read_text())]
# Lines run elsewhere: the set-up commands (CI runs them), torchrun (tests/test_distributed.py), the MLflow
# UI (a server), a download (the network; tests/test_download.py on a local archive).
ELSEWHERE = ("pip install", "torchrun", "mlflow ui", "recvae download")
# Commands checked by parsing only: an hour on real data, or Spark (tests/test_spark.py runs it).
PARSED_ONLY = ("recvae benchmark evaluation/benchmarks/", "--engine spark")


@pytest.fixture(scope="module")
def docs_data(tmp_path_factory):
    """What the pages read, generated: a rated log with integer IDs as ratings.csv(.gz), histories.parquet and
    MovieLens' ratings.dat, and item names as movies.csv and movies.dat (Latin-1, as published)."""
    from recvae.data import SyntheticLog, generate_log

    folder = tmp_path_factory.mktemp("docs")
    log = generate_log(SyntheticLog(n_users=600, n_items=200, n_groups=6, median_activity=25, seed=4, string_ids=False))
    log = log.assign(user=log["user"] + 1, item=log["item"] + 1)  # MovieLens counts from 1
    log.to_csv(folder / "ratings.csv", index=False)
    log.to_csv(folder / "ratings.csv.gz", index=False)
    log[["user", "item", "rating"]].to_parquet(folder / "histories.parquet")
    titles = pd.DataFrame({"movieId": range(1, 201), "title": [f"Film {i} – été" for i in range(1, 201)],
                           "genres": "Drama"})
    titles.to_csv(folder / "movies.csv", index=False)
    (folder / "ml-1m").mkdir()
    (folder / "ml-1m" / "ratings.dat").write_text(
        "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in log[["user", "item", "rating", "timestamp"]].itertuples(index=False)))
    (folder / "ml-1m" / "movies.dat").write_bytes(
        "".join(f"{i}::Film {i} (été)::{'Drama' if i % 3 else 'Comedy|Drama'}\n" for i in range(1, 201)).encode("latin-1"))
    (folder / "ml-1m" / "users.dat").write_text(
        "".join(f"{u}::{'FM'[u % 2]}::{(u % 5) * 10 + 18}::{u % 7}::0{u:04d}\n" for u in range(1, 601)))
    return folder


def _blocks(page: str) -> list[tuple[str, str]]:
    return re.findall(r"```(python|bash)\n(.*?)```", (ROOT / page).read_text(), flags=re.S)


def _smaller(text: str, data: Path) -> str:
    """The pages' paths swapped for the generated files, and their runs made brief."""
    for before, after in (("~/.cache/recvae/ml-1m/", f"{data}/ml-1m/"),
                          ('Path.home() / ".cache/recvae/ml-1m"', f"Path({str(data / 'ml-1m')!r})"),
                          ("heldout_users=600", "heldout_users=60"), ("MultVAE()", "MultVAE(epochs=2)"),
                          ("MultVAE(epochs=100)", "MultVAE(epochs=2)"), ("--trials 30", "--trials 2"),
                          ("epochs=50", "epochs=2")):
        text = text.replace(before, after)
    return text


def _run_command(line: str, data: Path) -> None:
    from recvae.cli import build_parser, main

    argv = shlex.split(_smaller(line, data), comments=True)
    assert argv[0] == "recvae", f"a command the docs test does not know how to run: {line}"
    if any(words in line for words in PARSED_ONLY):
        build_parser().parse_args(argv[1:])
        return
    model = argv[argv.index("--model") + 1] if "--model" in argv else "multvae"
    if argv[1] in ("train", "tune") and model in ("multvae", "multdae", "recvae", "cvae"):
        argv += ["--epochs", "2"]
    assert main(argv[1:] + ["--overwrite"] * (argv[1] in ("train", "recommend", "similar", "sample")) + ["-q"]) == 0, line


def test_every_code_block_of_the_readme_and_the_guides_runs(docs_data, monkeypatch):
    monkeypatch.chdir(docs_data)  # one folder for every page, in order, where the pages' files are
    ran = 0
    for page in PAGES:
        namespace: dict = {}
        for language, code in _blocks(page):
            if language == "python":
                exec(compile(_smaller(code, docs_data), page, "exec"), namespace)
                ran += 1
                continue
            for line in code.replace("\\\n", " ").strip().splitlines():  # a continued line is one command
                if line.strip() and not line.strip().startswith("#") and not line.startswith(ELSEWHERE):
                    _run_command(line, docs_data)
                    ran += 1
    assert ran >= 12  # the quickstart's commands and Python, the guides' examples
