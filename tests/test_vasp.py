"""VASP, FLVAE and Neural EASE (#19): the focal loss, the paths, the zero diagonal, the memory refusal."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.errors import CapacityError
from recvae.evaluate import evaluate
from recvae.models import FLVAE, VASP, MultVAE, NeuralEASE, Popularity, Recommender
from recvae.models.nn import SparseBatch, focal_loss, negative_log_likelihood
from recvae.models.vasp import check_shallow_memory, log_probabilities, masked
from recvae.split import strong_generalization_split

SMALL = dict(batch_size=100, hidden_dim=32, latent_dim=16, encoder_layers=3, decoder_layers=2, learning_rate=1e-2)


@pytest.fixture(scope="module")
def split():
    log = generate_log(SyntheticLog(n_users=900, n_items=200, n_groups=5, median_activity=15, seed=5))
    return strong_generalization_split(Interactions.from_frame(preprocess(log)), 120, seed=4)


@pytest.fixture(scope="module")
def vasp(split):
    return VASP(epochs=6, patience=None, **SMALL).fit(split.train, None, split.items)


def _batch(dense: np.ndarray) -> SparseBatch:
    return SparseBatch.from_csr(sp.csr_matrix(dense.astype(np.float32)), torch.device("cpu"))


def _direct_focal(p: torch.Tensor, y: torch.Tensor, gamma: float, alpha: float | None) -> torch.Tensor:
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    return -(a_pos * y * (1 - p) ** gamma * torch.log(p) + a_neg * (1 - y) * p**gamma * torch.log(1 - p)).sum(dim=1)


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (0.5, None), (0.0, 0.7)])
def test_focal_loss_equals_its_direct_computation(gamma, alpha):
    rng = np.random.default_rng(0)
    y = (rng.random((5, 9)) < 0.3).astype(np.float32)
    logits = torch.from_numpy(rng.normal(0, 2, (5, 9)).astype(np.float32))
    batch = _batch(y)
    expected = _direct_focal(torch.sigmoid(logits), torch.from_numpy(y), gamma, alpha)
    got = negative_log_likelihood(logits, batch, "focal", focal_gamma=gamma, focal_alpha=alpha)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the product of two sigmoids (VASP's output) through log p and log(1 - p)
    other = torch.from_numpy(rng.normal(1, 2, (5, 9)).astype(np.float32))
    log_p, log_q = log_probabilities([logits, other])
    product = torch.sigmoid(logits) * torch.sigmoid(other)
    torch.testing.assert_close(focal_loss(log_p, log_q, batch, gamma, alpha), _direct_focal(product, torch.from_numpy(y), gamma, alpha),
                               rtol=1e-5, atol=1e-5)


def test_focal_loss_with_exponent_zero_and_no_weighting_is_binary_cross_entropy():
    rng = np.random.default_rng(1)
    y = (rng.random((4, 12)) < 0.4).astype(np.float32)
    logits = torch.from_numpy(rng.normal(0, 3, (4, 12)).astype(np.float32))
    bce = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y), reduction="none").sum(dim=1)
    got = negative_log_likelihood(logits, _batch(y), "focal", focal_gamma=0.0, focal_alpha=None)
    torch.testing.assert_close(got, bce, rtol=1e-5, atol=1e-5)


def test_a_masked_batch_keeps_each_users_entries_and_drops_the_rest():
    y = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=np.float32)
    batch = _batch(y)
    keep = torch.tensor([True, False, True, False, True])
    half = masked(batch, keep)
    assert half.n_rows == 3 and half.rows.tolist() == [0, 0, 2] and half.indices.tolist() == [0, 3, 1]


def test_neural_ease_keeps_a_zero_diagonal_while_learning(split):
    model = NeuralEASE(epochs=5, batch_size=100, learning_rate=3e-3, patience=None).fit(split.train)
    weight = model.module_.item_item.detach()
    assert torch.count_nonzero(weight.diagonal()) == 0
    assert torch.count_nonzero(weight) > 0.9 * (weight.numel() - weight.shape[0])  # the rest did learn


def test_vasp_scores_are_the_sum_of_its_paths_scores(vasp, split, tmp_path):
    """A VASP whose deep (or shallow) path is switched off scores with the other path alone: on the same
    weights, the two one-path models' log-probabilities add up to VASP's."""
    saved = vasp.save(tmp_path / "vasp")
    history = split.test.fold_in[:20]
    parts = []
    for switched_off in ("deep", "shallow"):
        part = Recommender.load(saved)
        part.config = dataclasses.replace(part.config, **{switched_off: False})
        kept = {k: v for k, v in part.module_.state_dict().items() if (k == "item_item") == (switched_off == "deep")}
        part.module_ = part._new_module(part.n_items_)
        part.module_.load_state_dict(kept)
        parts.append(part.score(history))
    np.testing.assert_allclose(parts[0] + parts[1], vasp.score(history), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("path, alone", [("deep", NeuralEASE), ("shallow", FLVAE)])
def test_vasp_without_a_path_is_the_model_of_the_other(split, path, alone):
    params = dict(epochs=3, patience=None, **SMALL)
    history = split.test.fold_in[:20]
    one_path = VASP(**{path: False}, **params).fit(split.train, split.validation, split.items)
    np.testing.assert_array_equal(one_path.score(history), alone(**params).fit(split.train, split.validation, split.items).score(history))


@pytest.mark.parametrize("cls", [VASP, FLVAE, NeuralEASE])
def test_each_model_clearly_beats_popularity(cls, split, vasp):
    model = vasp if cls is VASP else cls(epochs=6, patience=None, **SMALL).fit(split.train, None, split.items)
    ndcg = evaluate(model, split.test, ["ndcg@100"]).summary()["ndcg@100"]
    popular = evaluate(Popularity().fit(split.train), split.test, ["ndcg@100"]).summary()["ndcg@100"]
    assert ndcg > popular + 0.1, (ndcg, popular)


def test_focal_loss_trains_the_other_autoencoders(split):
    model = MultVAE(likelihood="focal", epochs=15, batch_size=100, hidden_dims=(), latent_dim=32, learning_rate=1e-2,
                    patience=None).fit(split.train, None, split.items)
    ndcg = evaluate(model, split.test, ["ndcg@100"]).summary()["ndcg@100"]
    popular = evaluate(Popularity().fit(split.train), split.test, ["ndcg@100"]).summary()["ndcg@100"]
    assert ndcg > popular + 0.1, (ndcg, popular)


def test_a_catalogue_whose_item_item_weight_cannot_fit_is_refused_before_allocating(split, monkeypatch):
    from recvae.models import vasp as module

    monkeypatch.setattr(module, "available_memory", lambda: 10 * 2**30)
    check_shallow_memory(20_000, "VASP")  # 16 bytes x 20k^2 = 6.0 GiB fits in 10
    with pytest.raises(CapacityError, match=r"40,000 items needs about 23.8 GiB.*FLVAE"):
        check_shallow_memory(40_000, "VASP")
    huge = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 10**7), dtype=np.float32)
    with pytest.raises(CapacityError, match="10,000,000 items"):  # 1.6 PB: refused, not attempted
        NeuralEASE(epochs=1).fit(huge)
    FLVAE(epochs=1, **SMALL).fit(split.train)  # the deep path alone has no items x items weight to refuse


def test_bad_settings_are_refused_when_configured():
    with pytest.raises(ValueError, match="cannot both be off"):
        VASP(deep=False, shallow=False)
    with pytest.raises(ValueError, match="focal_alpha"):
        VASP(focal_alpha=1.5)
    with pytest.raises(ValueError, match="focal_gamma"):
        MultVAE(likelihood="focal", focal_gamma=-1.0)


def test_the_memory_check_reads_a_process_memory_limit(tmp_path):
    """Under ``ulimit -v`` (or a container's limit) the refusal comes before training, not the allocator's death."""
    import subprocess
    import sys

    script = (
        "import resource\n"
        "from recvae.models.ease import available_memory\n"
        "from recvae.models.vasp import check_shallow_memory\n"
        "from recvae.errors import CapacityError\n"
        "free = available_memory()\n"
        "used = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.RLIM_INFINITY))  # 1 GiB more than now\n"
        "limited = available_memory()\n"
        "try:\n"
        "    check_shallow_memory(12_000, 'VASP')\n"
        "    print('trained on', limited)\n"
        "except CapacityError as exc:\n"
        "    print('refused', limited < 1.01 * 2**30 < free, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("refused True") and "12,000 items needs about 2.1 GiB" in done.stdout, done.stdout + done.stderr


def test_a_shallow_path_held_at_the_closed_form_ranks_as_edlae_does(split, tmp_path):
    from recvae.models import EDLAE, EASE
    from recvae.models.dlae import edlae_weights

    held = NeuralEASE(epochs=2, patience=None, shallow_start="edlae", shallow_l2=50.0, shallow_dropout=0.3,
                      shallow_trainable=False, **SMALL).fit(split.train, None, split.items)
    binary = sp.csr_matrix(split.train > 0, dtype=np.float32)  # what the models train on
    np.testing.assert_array_equal(held.module_.item_item.detach().numpy(),
                                  edlae_weights(binary, 50.0, 0.3).numpy())  # untouched by two epochs
    scale = held.module_.shallow_scale.item()
    assert scale > 0  # a fitted calibration: the logits rise with the closed form's scores
    linear = EDLAE(l2=50.0, dropout=0.3).fit(split.train)
    a, _ = held.top_n(split.test.fold_in, 20)
    b, _ = linear.top_n(split.test.fold_in, 20)
    assert (a == b).mean() > 0.99  # a monotone map of the same scores: only float near-ties may swap
    held.save(tmp_path / "held")
    np.testing.assert_allclose(Recommender.load(tmp_path / "held").score(split.test.fold_in[:20]),
                               held.score(split.test.fold_in[:20]), rtol=1e-6)
    ease = NeuralEASE(epochs=1, shallow_start="edlae", shallow_l2=50.0, shallow_trainable=False, **SMALL).fit(split.train)
    np.testing.assert_allclose(ease.module_.item_item.detach().numpy(), EASE(l2=50.0).fit(split.train).module_.weights.numpy(),
                               rtol=1e-5, atol=1e-6)  # dropout 0: EASE


def test_vasp_started_from_the_closed_form_trains_both_paths(split):
    started = VASP(epochs=3, patience=None, shallow_start="edlae", shallow_l2=50.0, **SMALL)
    started.fit(split.train, split.validation, split.items)
    moved = started.module_.item_item.detach().numpy()
    from recvae.models.dlae import edlae_weights

    start = edlae_weights(sp.csr_matrix(split.train > 0, dtype=np.float32), 50.0, 0.0).numpy()
    assert not np.allclose(moved, start) and np.corrcoef(moved.ravel(), start.ravel())[0, 1] > 0.5  # moved from it
    assert not np.diagonal(moved).any() and np.isfinite(started.score(split.test.fold_in)).any()
    result = evaluate(started, split.test, ("ndcg@100",)).mean("ndcg@100")
    popularity = evaluate(Popularity().fit(split.train), split.test, ("ndcg@100",)).mean("ndcg@100")
    assert result > popularity


def test_a_neutral_deep_path_starts_ranking_as_the_held_dlae_start(split):
    from recvae.models import DLAE

    neutral = VASP(epochs=1, patience=None, shallow_start="dlae", shallow_l2=50.0, shallow_dropout=0.3,
                   shallow_trainable=False, deep_start="neutral", **{**SMALL, "learning_rate": 1e-12})
    neutral.fit(split.train, None, split.items)  # one step of 1e-12: the start, as near as training gets
    weights = neutral.module_.item_item.detach().numpy()
    binary = sp.csr_matrix(split.train > 0, dtype=np.float32)
    from recvae.models.dlae import dlae_weights

    expected = dlae_weights(binary, 50.0, 0.3).numpy()
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_array_equal(weights, expected)
    dlae = DLAE(l2=50.0, dropout=0.3).fit(split.train)
    a, _ = neutral.top_n(split.test.fold_in, 20)
    b, _ = dlae.top_n(split.test.fold_in, 20)
    assert (a == b).mean() > 0.99  # the deep path's sigmoids are all equal: only float near-ties may swap
    drawn = VASP(epochs=1, patience=None, shallow_start="dlae", shallow_l2=50.0, shallow_dropout=0.3,
                 shallow_trainable=False, **{**SMALL, "learning_rate": 1e-12}).fit(split.train, None, split.items)
    c, _ = drawn.top_n(split.test.fold_in, 20)
    assert (c == b).mean() < 0.9  # a drawn deep path starts as noise on the closed form's ranking


@pytest.mark.parametrize("settings, words", [(dict(shallow_start="ease"), "one of random, edlae, dlae"),
                                             (dict(deep=True, shallow=False, shallow_start="edlae"), "which is off"),
                                             (dict(shallow_trainable=False), "random weight"),
                                             (dict(shallow_start="edlae", shallow_dropout=1.0), "shallow_dropout"),
                                             (dict(deep_start="zero"), "one of random, neutral"),
                                             (dict(deep=False, deep_start="neutral"), "deep path, which is off")])
def test_bad_shallow_starts_are_refused_when_configured(settings, words):
    from recvae.errors import ParameterError

    with pytest.raises(ParameterError, match=words):
        VASP(**settings)


def test_the_item_item_weight_learns_at_its_own_rate(split):
    from recvae.models.dlae import edlae_weights

    start = edlae_weights(sp.csr_matrix(split.train > 0, dtype=np.float32), 50.0, 0.0).numpy()
    slow = VASP(epochs=2, patience=None, shallow_start="edlae", shallow_l2=50.0, shallow_learning_rate=1e-9, **SMALL)
    slow.fit(split.train)
    moved = np.abs(slow.module_.item_item.detach().numpy() - start).max()
    assert 0 < moved < 1e-6  # Nadam moves each weight by about its rate a step; the deep path's rate is 1e-2
    with pytest.raises(Exception, match="positive"):
        VASP(shallow_learning_rate=0.0)
