import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recvae.errors import DataError, ModelFileError, NotFittedError, ParameterError
from recvae.evaluate import evaluate
from recvae.models import MultDAE, MultVAE, Popularity, Recommender
from recvae.models.nn import SparseBatch, negative_log_likelihood, normalised_input
from recvae.train import Trainer

FAST = dict(epochs=12, batch_size=100)


@pytest.fixture(scope="module")
def fitted_vae(small_split):
    return MultVAE(**FAST).fit(small_split.train, small_split.validation, small_split.items)


def test_multvae_clearly_beats_popularity(small_split, fitted_vae):
    vae = evaluate(fitted_vae, small_split.test).summary()
    pop = evaluate(Popularity().fit(small_split.train), small_split.test).summary()
    for metric in ("ndcg@100", "recall@20", "recall@50"):
        # a margin of many standard errors, so luck cannot pass it
        assert vae[metric] - pop[metric] > 5 * max(vae[f"{metric}_se"], pop[f"{metric}_se"]), metric


def test_multdae_clearly_beats_popularity(small_split):
    dae = MultDAE(**FAST).fit(small_split.train, small_split.validation)
    pop = Popularity().fit(small_split.train)
    assert evaluate(dae, small_split.test).mean("ndcg@100") > evaluate(pop, small_split.test).mean("ndcg@100") + 0.15


def test_history_records_every_epoch(fitted_vae):
    history = fitted_vae.history_
    assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))
    for key in ("loss", "reconstruction", "kl", "beta", "val_ndcg@100", "val_recall@20", "train_seconds"):
        assert all(np.isfinite(r[key]) for r in history), key
    assert history[-1]["beta"] > history[0]["beta"] >= 0


def test_the_best_epochs_weights_are_kept(small_split):
    scores = iter([0.1, 0.5, 0.2, 0.3])  # validation peaks at the second of four epochs
    snapshots = []
    model = MultVAE(epochs=4, batch_size=100, patience=None)
    trainer = Trainer(callbacks=(lambda record: snapshots.append(model.module_.input_weight.detach().clone()),))
    model.fit(small_split.train, lambda fitted: {"ndcg@100": next(scores)}, trainer=trainer)
    assert [r["val_ndcg@100"] for r in model.history_] == [0.1, 0.5, 0.2, 0.3]
    assert torch.equal(model.module_.input_weight, snapshots[1]) and not torch.equal(snapshots[1], snapshots[3])


def test_same_seed_same_weights(small_split):
    a = MultVAE(epochs=2, batch_size=200).fit(small_split.train)
    b = MultVAE(epochs=2, batch_size=200).fit(small_split.train)
    c = MultVAE(epochs=2, batch_size=200, seed=1).fit(small_split.train)
    for (name, x), y, z in zip(a.module_.state_dict().items(), b.module_.state_dict().values(), c.module_.state_dict().values()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.module_.input_weight, c.module_.input_weight)


def test_save_load_gives_identical_scores(tmp_path, small_split, fitted_vae):
    path = fitted_vae.save(tmp_path / "model", metadata={"note": "x"})
    loaded = Recommender.load(path)
    assert isinstance(loaded, MultVAE) and loaded.get_params() == fitted_vae.get_params()
    assert loaded.items_ == small_split.items
    assert loaded.metadata_["note"] == "x" and len(loaded.metadata_["history"]) == len(fitted_vae.history_)
    block = small_split.test.fold_in
    assert np.array_equal(loaded.score(block), fitted_vae.score(block))
    assert np.array_equal(loaded.top_n(block, 20)[0], fitted_vae.top_n(block, 20)[0])


def test_popularity_save_load(tmp_path, small_split):
    pop = Popularity().fit(small_split.train)
    loaded = Popularity.load(pop.save(tmp_path / "pop"))
    assert np.array_equal(loaded.score(small_split.test.fold_in[:3]), pop.score(small_split.test.fold_in[:3]))
    with pytest.raises(ModelFileError, match="holds a Popularity, not a MultVAE"):
        MultVAE.load(tmp_path / "pop")


def test_truncated_or_edited_weights_are_refused(tmp_path, fitted_vae):
    path = fitted_vae.save(tmp_path / "model")
    weights = path / "weights.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="truncated or edited"):
        Recommender.load(path)
    edited = bytearray(raw)
    edited[-10] ^= 0xFF
    weights.write_bytes(bytes(edited))
    with pytest.raises(ModelFileError, match="truncated or edited"):
        Recommender.load(path)


def test_edited_manifest_is_refused(tmp_path, fitted_vae):
    path = fitted_vae.save(tmp_path / "model")
    manifest = json.loads((path / "model.json").read_text())
    manifest["config"]["latent_dim"] = 50
    (path / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"model.json: contents differ from what was saved \(edited\)"):
        Recommender.load(path)
    del manifest["manifest_sha256"]  # a model of this format without its checksum: an edit, refused
    (path / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="lacks its checksum"):
        Recommender.load(path)
    manifest["format"] = 1  # as an older recvae wrote it: the config is trusted, the weights still checked
    (path / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="weights do not match the config"):
        Recommender.load(path)
    (path / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Recommender.load(path)
    with pytest.raises(ModelFileError, match="not a recvae model directory"):
        Recommender.load(tmp_path / "nothing")


def test_resume_refuses_other_config(tmp_path, small_split):
    MultVAE(epochs=1, batch_size=200).fit(small_split.train, trainer=Trainer(checkpoint_dir=tmp_path))
    with pytest.raises(ModelFileError, match="another model or config"):
        MultVAE(epochs=2, batch_size=100).fit(small_split.train, trainer=Trainer(checkpoint_dir=tmp_path, resume=True))


def test_recommend_single_and_batch(small_split, fitted_vae):
    history = small_split.test.fold_in[:5]
    ids, scores = fitted_vae.recommend(np.arange(5), history, N=7)
    assert ids.shape == scores.shape == (5, 7)
    assert np.all(np.diff(scores, axis=1) <= 0)
    for row in range(5):
        assert not set(ids[row]) & set(history[row].indices)
    one_ids, _ = fitted_vae.recommend(3, history[3], N=7)
    assert one_ids.ndim == 1 and np.array_equal(one_ids, ids[3])
    allowed = np.array([1, 5, 9, 11])
    only, _ = fitted_vae.recommend(0, history[0], N=10, items=allowed, filter_already_liked_items=False)
    assert set(only) == set(allowed)
    with pytest.raises(DataError, match="5 rows for 2 user IDs"):
        fitted_vae.recommend(np.arange(2), history)


def test_similar_items_returns_itself_first(fitted_vae):
    ids, scores = fitted_vae.similar_items(4, N=5)
    assert ids[0] == 4 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_wrong_input_is_refused(small_split, fitted_vae):
    with pytest.raises(DataError, match="item columns; the model was fitted on"):
        fitted_vae.score(sp.csr_matrix((2, 3)))
    with pytest.raises(DataError, match="must be a scipy.sparse matrix"):
        fitted_vae.score(np.zeros((2, small_split.n_items)))
    # a log as read is the likeliest mistake: the message says how to make the matrix
    with pytest.raises(DataError, match=r"got DataFrame; .*Interactions.from_frame\(frame\)"):
        MultVAE().fit(pd.DataFrame({"user": [1, 2], "item": [3, 4]}))
    with pytest.raises(NotFittedError):
        MultVAE().score(small_split.test.fold_in)
    with pytest.raises(DataError, match="no interactions"):
        MultVAE().fit(sp.csr_matrix((3, 4)))
    with pytest.raises(ValueError, match="dropout"):
        MultVAE(dropout=1.5)


@pytest.mark.parametrize("likelihood", ["multinomial", "gaussian", "logistic"])
def test_likelihood_matches_dense_formula(likelihood):
    x = sp.random(6, 15, density=0.3, format="csr", random_state=1, dtype=np.float32)
    x.data[:] = 1.0
    batch = SparseBatch.from_csr(x, torch.device("cpu"))
    logits = torch.randn(6, 15, dtype=torch.float64).float()
    dense = torch.from_numpy(x.toarray())
    expected = {
        "multinomial": -(torch.log_softmax(logits, 1) * dense).sum(1),
        "gaussian": 0.5 * ((dense - logits) ** 2).sum(1),
        "logistic": torch.nn.functional.binary_cross_entropy_with_logits(logits, dense, reduction="none").sum(1),
    }[likelihood]
    assert torch.allclose(negative_log_likelihood(logits, batch, likelihood), expected, atol=1e-4)


@pytest.mark.parametrize("likelihood", ["gaussian", "logistic"])
def test_other_likelihoods_train(small_split, likelihood):
    model = MultVAE(epochs=2, batch_size=200, likelihood=likelihood).fit(small_split.train)
    assert all(np.isfinite(r["loss"]) for r in model.history_)


def test_sparse_first_layer_equals_dense_product(fitted_vae, small_split):
    x = small_split.test.fold_in[:4]
    batch = SparseBatch.from_csr(x, torch.device("cpu"))
    values = normalised_input(batch)
    dense = torch.from_numpy(x.toarray())
    dense = dense / dense.norm(dim=1, keepdim=True)
    module = fitted_vae.module_
    with torch.no_grad():
        mu, _ = module.encode(batch, values)
        h = torch.tanh(dense @ module.input_weight + module.input_bias)
        expected = module.encoder[0](h)[:, : module.latent_dim]
        mean_only, logvar = module.encode(batch, values, mean_only=True)
    assert torch.allclose(mu, expected, atol=1e-5)
    assert logvar is None and mean_only.shape == mu.shape
    torch.testing.assert_close(mean_only, mu)


def test_ease_matches_its_closed_form_and_round_trips(tmp_path, small_split):
    from recvae.models import EASE

    model = EASE(l2=50.0).fit(small_split.train)
    x = (small_split.train.toarray() != 0).astype(np.float64)  # binarize=True: every stored rating counts as 1
    p = np.linalg.inv(x.T @ x + 50.0 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    assert np.allclose(model.module_.weights.numpy(), b, atol=1e-4)
    assert np.allclose(np.diag(model.module_.weights.numpy()), 0)
    pop = Popularity().fit(small_split.train)
    assert evaluate(model, small_split.test).mean("ndcg@100") > evaluate(pop, small_split.test).mean("ndcg@100") + 0.15
    loaded = Recommender.load(model.save(tmp_path / "ease"))
    assert np.array_equal(loaded.score(small_split.test.fold_in[:5]), model.score(small_split.test.fold_in[:5]))


def test_dlae_and_edlae_match_steck_s_closed_forms(small_split):
    from recvae.models import DLAE, EASE, EDLAE

    x = (small_split.train.toarray() != 0).astype(np.float64)
    gram = x.T @ x
    penalty = 50.0 + 0.3 / 0.7 * np.diag(gram)  # lambda + p / (1 - p) diag(X^T X)
    dlae = DLAE(l2=50.0, dropout=0.3).fit(small_split.train).module_.weights.numpy()
    np.testing.assert_allclose(dlae, np.linalg.solve(gram + np.diag(penalty), gram), atol=1e-4)
    p = np.linalg.inv(gram + np.diag(penalty))
    edlae = EDLAE(l2=50.0, dropout=0.3).fit(small_split.train).module_.weights.numpy()
    np.testing.assert_allclose(edlae, np.eye(len(p)) - p / np.diag(p), atol=1e-4)
    assert np.allclose(np.diag(edlae), 0)  # the emphasised denoising's diagonal constraint holds
    assert np.abs(np.diag(dlae)).max() > 0.01  # DLAE's is free
    # without dropout, EDLAE is EASE; DLAE is ridge regression, B = (G + lambda I)^-1 G, not EASE
    ease = EASE(l2=50.0).fit(small_split.train).module_.weights.numpy()
    np.testing.assert_allclose(EDLAE(l2=50.0, dropout=0.0).fit(small_split.train).module_.weights.numpy(), ease, atol=1e-5)
    ridge = DLAE(l2=50.0, dropout=0.0).fit(small_split.train).module_.weights.numpy()
    np.testing.assert_allclose(ridge, np.linalg.solve(gram + 50.0 * np.eye(len(gram)), gram), atol=1e-4)
    with pytest.raises(ParameterError, match="l2=0.0: must be positive with dropout=0"):
        DLAE(l2=0.0, dropout=0.0)


def test_ease_refuses_a_catalogue_the_memory_cannot_hold_before_allocating(small_split, monkeypatch):
    import recvae.models.ease as ease
    from recvae.errors import CapacityError

    with pytest.raises(CapacityError, match=r"EASE over 1,000,000 items needs about 3740\.5 GiB \(one 1,000,000 x 1,000,000 float32 matrix\)"):
        ease.check_memory(1_000_000)
    monkeypatch.setattr(ease, "available_memory", lambda: 10**6)
    monkeypatch.setattr(ease, "gram_matrix", lambda *a: pytest.fail("allocated before the memory check"))
    with pytest.raises(CapacityError, match=r"keep fewer items \(min_item_interactions\)"):
        ease.EASE(l2=50.0).fit(small_split.train)


def test_ease_blocks_give_the_same_weights_as_one_block(small_split, monkeypatch):
    import recvae.models.ease as ease

    whole = ease.EASE(l2=50.0).fit(small_split.train).module_.weights
    monkeypatch.setattr(ease, "BLOCK", 37)  # Gram columns and the mirrored inverse in uneven blocks
    assert torch.allclose(ease.EASE(l2=50.0).fit(small_split.train).module_.weights, whole, atol=1e-6)
