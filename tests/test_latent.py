"""The latent space as a product: embeddings to Parquet, group recommendations, the latent report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recvae.cli import main
from recvae.data import Interactions, read_interactions
from recvae.models import EASE, MultVAE


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_log_file):
    folder = tmp_path_factory.mktemp("latent")
    model = folder / "model"
    assert main(["train", "--data", str(small_log_file), "--out", str(model), "--epochs", "3", "--hidden-dims", "32",
                 "--latent-dim", "8", "--heldout-users", "30", "-q", "--no-tracking"]) == 0
    return folder, model


def test_embed_writes_every_users_position_in_original_ids_block_by_block(trained, small_log_file):
    folder, model = trained
    users, items = folder / "users.parquet", folder / "items.parquet"
    assert main(["embed", "--model", str(model), "--interactions", str(small_log_file), "--out", str(users),
                 "--items", str(items), "--batch-users", "40", "-q"]) == 0
    assert pq.ParquetFile(users).metadata.num_row_groups > 1  # written block by block, not held whole
    frame = pd.read_parquet(users)
    log = read_interactions(small_log_file)
    assert set(frame["user"]) == set(log["user"]) and frame["user"].is_unique
    loaded = MultVAE.load(model)
    mean = np.stack(frame["mean"].to_numpy())
    # the same positions the Python API gives for the same histories
    some = log[log["user"].isin(frame["user"].iloc[:5])]
    rows = Interactions.from_frame(some[some["item"].isin(loaded.items_.ids)], items=loaded.items_)
    order = [frame.index[frame["user"] == u][0] for u in rows.users.ids]
    np.testing.assert_allclose(loaded.encode(rows.matrix).mean, mean[order], rtol=1e-5, atol=1e-6)
    assert (np.stack(frame["std"].to_numpy()) > 0).all()
    vectors = pd.read_parquet(items)
    assert list(vectors.columns) == ["item", "output", "input"] and len(vectors) == loaded.n_items_


def test_embed_refuses_a_model_without_a_latent_space_and_a_csv_before_reading(trained, small_log_file, tmp_path, capsys):
    folder, _ = trained
    ease = tmp_path / "ease"
    EASE(l2=10.0).fit(Interactions.from_frame(read_interactions(small_log_file)).matrix,
                      items=Interactions.from_frame(read_interactions(small_log_file)).items).save(ease)
    assert main(["embed", "--model", str(ease), "--interactions", str(small_log_file), "--out",
                 str(tmp_path / "u.parquet"), "-q"]) == 2
    assert "EASE has no latent space: it scores items from items" in capsys.readouterr().err
    assert not (tmp_path / "u.parquet").exists()
    assert main(["embed", "--model", str(folder / "model"), "--interactions", "nowhere.csv", "--out",
                 str(tmp_path / "u.csv"), "-q"]) == 2
    assert "u.csv': name a .parquet file" in capsys.readouterr().err  # before the missing log is even looked for
