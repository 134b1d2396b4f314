"""The optional RecBole adapter: trained on our matrix, scored by fold-in through our metric code."""

import sys

import numpy as np
import pytest

pytest.importorskip("recbole")

pytestmark = pytest.mark.slow  # real servers / RecBole / whole benchmarks: `pytest -m "not slow"` skips them

from recvae.errors import ModelFileError  # noqa: E402
from recvae.evaluate import evaluate  # noqa: E402
from recvae.models import EASE, Popularity  # noqa: E402
from recvae.models.recbole import FOLD_IN, RecBoleModel  # noqa: E402


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    # RecBole reads sys.argv and likes to write under the working directory: give it both to misuse.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["recvae", "benchmark", "--epochs=1", "--models", "x"])


def test_recbole_ease_equals_recvae_ease(small_split, tmp_path):
    ours = EASE(l2=250.0).fit(small_split.train)
    theirs = RecBoleModel(model="EASE", params={"reg_weight": 250.0}).fit(small_split.train, small_split.validation)
    history = small_split.test.fold_in[:50]
    assert np.allclose(theirs.score(history), ours.score(history), atol=1e-3)
    assert not (tmp_path / "log_tensorboard").exists() and not (tmp_path / "saved").exists()


@pytest.mark.parametrize("name", sorted(set(FOLD_IN) - {"EASE"}))
def test_each_supported_model_trains_and_scores_held_out_users(small_split, name):
    rate = 0.002 if name == "RecVAE" else 0.01  # two epochs at RecBole's default rates barely move BPR
    model = RecBoleModel(model=name, params={"learning_rate": rate}, epochs=2, patience=5)
    model.fit(small_split.train, small_split.validation)
    assert len(model.history_) == 2 and "val_ndcg@100" in model.history_[0]
    scores = model.score(small_split.test.fold_in[:10])
    assert scores.shape == (10, small_split.n_items) and np.isfinite(scores).all()
    result = evaluate(model, small_split.test).mean("ndcg@100")
    popularity = evaluate(Popularity().fit(small_split.train), small_split.test).mean("ndcg@100")
    assert result > popularity + 0.05


def test_best_epoch_is_kept(small_split):
    model = RecBoleModel(model="MultiDAE", params={"learning_rate": 0.05}, epochs=5, patience=5)
    model.fit(small_split.train, small_split.validation)
    best = max(r["val_ndcg@100"] for r in model.history_)
    assert evaluate(model, small_split.validation).mean("ndcg@100") == pytest.approx(best)


def test_unsupported_model_and_saving_are_refused(small_split, tmp_path):
    with pytest.raises(ValueError, match="supported"):
        RecBoleModel(model="SASRec")
    model = RecBoleModel(model="EASE").fit(small_split.train)
    with pytest.raises(ModelFileError, match="cannot be saved"):
        model.save(tmp_path / "m")
