"""What every registered model must do (implicit's RecommenderBaseTestMixin, scikit-learn's check_estimator):
a model added to recvae.models.REGISTRY gets these tests by being listed in SETTINGS."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.errors import ModelFileError, NotFittedError
from recvae.models import REGISTRY, IterativeRecommender, Recommender
from recvae.split import strong_generalization_split

# Small settings per model: the contract is about behaviour, not quality.
SETTINGS = {
    "MultVAE": dict(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=8),
    "MultVAE-vamp": dict(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=8, prior="vamp", pseudo_inputs=10),
    "MultVAE-hvamp": dict(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=4, latent_levels=2, prior="vamp",
                          pseudo_inputs=10),
    "MultVAE-dlae": dict(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=8, linear_weight=1.0, linear_l2=50.0,
                         linear_dropout=0.3),
    "MultVAE-hvamp-linear": dict(epochs=3, batch_size=100, hidden_dims=(), latent_dim=4, latent_levels=2,
                                 prior="vamp", pseudo_inputs=10, likelihood="gaussian"),
    "MultVAE-hvamp-gated": dict(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=4, latent_levels=2,
                                prior="vamp", pseudo_inputs=10, activation="gated"),
    # the log's last two item columns stand for side features: the contract is about behaviour
    "CVAE": dict(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=8, conditions=2),
    "CVAE-dlae": dict(epochs=3, batch_size=100, hidden_dims=(32,), latent_dim=8, conditions=2, linear_weight=1.0,
                      linear_l2=50.0, linear_dropout=0.3, linear_half_length=5.0),
    "MultDAE": dict(epochs=3, batch_size=100, latent_dim=16),
    "RecVAE": dict(epochs=2, batch_size=100, hidden_dim=32, latent_dim=8),
    "RecVAE-dlae": dict(epochs=2, batch_size=100, hidden_dim=32, latent_dim=8, linear_weight=1.0, linear_l2=50.0,
                        linear_dropout=0.3),
    "EASE": dict(l2=50.0),
    "DLAE": dict(l2=50.0, dropout=0.3),
    "EDLAE": dict(l2=50.0, dropout=0.3),
    "ALS": dict(factors=8, iterations=3, num_threads=1),  # one thread: implicit's fits are then reproducible
    "BPR": dict(factors=8, iterations=10, fold_in_steps=20, num_threads=1),
    "Popularity": {},
    "RecBole": dict(model="MultiVAE", epochs=2, params={"mlp_hidden_size": [32], "latent_dimension": 16}),
    "VASP": dict(epochs=2, batch_size=100, hidden_dim=16, latent_dim=8, encoder_layers=2, decoder_layers=2),
    "FLVAE": dict(epochs=2, batch_size=100, hidden_dim=16, latent_dim=8, encoder_layers=2, decoder_layers=2),
    "NeuralEASE": dict(epochs=2, batch_size=100),
}
NAMES = sorted(SETTINGS)  # a registered name, or one and an option's name ("MultVAE-vamp")


def registered(name: str) -> str:
    return name.split("-")[0]


def test_every_registered_model_is_in_the_contract():
    assert set(REGISTRY) == {registered(name) for name in SETTINGS}


@pytest.fixture(scope="module")
def split():
    log = generate_log(SyntheticLog(n_users=400, n_items=150, n_groups=5, median_activity=15, seed=11))
    return strong_generalization_split(Interactions.from_frame(preprocess(log)), 50, seed=3)


def make(name: str) -> Recommender:
    if name == "RecBole":
        pytest.importorskip("recbole")
    return REGISTRY[registered(name)](**SETTINGS[name])


_FITTED: dict = {}


@pytest.fixture
def fitted(request, split):
    """One fitted model per name for the whole module (fitting is what costs)."""
    name = request.param
    if name not in _FITTED:
        _FITTED[name] = make(name).fit(split.train, split.validation, split.items)
    return _FITTED[name]


parametrize_fitted = pytest.mark.parametrize("fitted", NAMES, indirect=True)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_unfitted_models_refuse_to_score(name, split):
    model = make(name)
    history = split.test.fold_in[:3]
    for call in (lambda: model.score(history), lambda: model.recommend(0, history[0]), lambda: model.save("x")):
        with pytest.raises(NotFittedError):
            call()
    assert model.fit(split.train, split.validation, split.items) is model


@pytest.mark.parametrize("name", NAMES)
def test_unknown_fit_keyword_raises_type_error(name, split):
    with pytest.raises(TypeError):
        make(name).fit(split.train, progress=False)


@pytest.mark.parametrize("name", NAMES)
def test_a_setting_of_the_wrong_kind_or_a_misspelt_one_is_named_before_anything_runs(name):
    """``MultVAE(epochs="10")`` or ``hidden_dims=600`` is a ParameterError naming the setting, in the constructor
    and in set_params, rather than a TypeError from a comparison deep inside; a misspelt setting's TypeError
    suggests the right one."""
    import dataclasses
    import typing

    from recvae.errors import ParameterError

    model = make(name)
    hints = typing.get_type_hints(model.config_class)
    numeric = [f.name for f in dataclasses.fields(model.config) if hints[f.name] in (int, float)]
    assert numeric or name == "Popularity"
    for setting in numeric:
        for build in (lambda: type(model)(**{setting: "3"}), lambda: model.set_params(**{setting: "3"})):
            with pytest.raises(ParameterError, match=f"^{setting}='3': must be a"):
                build()
    first = dataclasses.fields(model.config)[0].name
    with pytest.raises(TypeError, match=f"did you mean '{first}'"):
        type(model)(**{first[:-1]: getattr(model.config, first)})


@parametrize_fitted
def test_single_and_batch_recommend_agree(fitted, split):
    history = split.test.fold_in[:6]
    ids, scores = fitted.recommend(np.arange(6), history, N=5)
    assert ids.shape == scores.shape == (6, 5)
    for row in range(6):
        one_ids, one_scores = fitted.recommend(row, history[row], N=5)
        assert np.array_equal(one_ids, ids[row])
        np.testing.assert_allclose(one_scores, scores[row], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


@parametrize_fitted
def test_already_liked_items_are_filtered_or_kept(fitted, split):
    history = split.test.fold_in[:4]
    n = fitted.n_items_
    ids, _ = fitted.recommend(np.arange(4), history, N=n)
    for row in range(4):
        assert not set(ids[row][ids[row] >= 0]) & set(history[row].indices)
    kept, _ = fitted.recommend(np.arange(4), history, N=n, filter_already_liked_items=False)
    for row in range(4):
        assert set(history[row].indices) & set(recommendable(fitted)) <= set(kept[row])


@parametrize_fitted
def test_items_and_filter_items(fitted, split):
    history = split.test.fold_in[0]
    allowed = np.array([1, 5, 9, 11, 40])
    only, _ = fitted.recommend(0, history, N=10, items=allowed, filter_already_liked_items=False)
    assert set(only) == set(allowed)
    removed = np.arange(0, fitted.n_items_, 2)
    rest, _ = fitted.recommend(0, history, N=20, filter_items=removed)
    assert len(rest) == 20 and not set(rest) & set(removed) and not set(rest) & set(history.indices)
    with pytest.raises(ValueError, match="not both"):
        fitted.recommend(0, history, items=allowed, filter_items=removed)


def recommendable(fitted) -> np.ndarray:
    """The columns a model may recommend: all but a conditional model's side features."""
    return np.arange(fitted.n_items_ - getattr(fitted.config, "conditions", 0))


@parametrize_fitted
def test_n_beyond_the_catalogue_returns_only_available_items(fitted, split):
    history = split.test.fold_in[:3]
    n_items = fitted.n_items_
    items = recommendable(fitted)
    ids, scores = fitted.recommend(0, history[0], N=n_items + 50)
    assert len(ids) == len(np.setdiff1d(items, history[0].indices)) and np.isfinite(scores).all()
    assert not set(ids) & set(history[0].indices) and len(set(ids)) == len(ids) and set(ids) <= set(items)
    batch_ids, batch_scores = fitted.recommend(np.arange(3), history, N=n_items + 50)
    assert batch_ids.shape == (3, n_items)
    for row in range(3):
        pad = batch_ids[row] < 0  # implicit's padding: item -1, score -inf
        assert pad.sum() == n_items - len(np.setdiff1d(items, history[row].indices))
        assert np.all(batch_scores[row][pad] == -np.inf)
        single, _ = fitted.recommend(row, history[row], N=n_items + 50)  # each row as that user's own call
        assert np.array_equal(batch_ids[row][~pad], single)


@parametrize_fitted
def test_scoring_the_catalogue_in_chunks_gives_the_same_top_n(fitted, split):
    history = split.test.fold_in
    allowed = np.arange(0, fitted.n_items_, 2)
    for allowed_items in (None, allowed):
        whole = fitted.top_n(history, 20, allowed_items=allowed_items, batch_size=16)
        chunked = fitted.top_n(history, 20, allowed_items=allowed_items, batch_size=16, item_chunk=13)
        np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-5, atol=1e-6)
        # the same items, except beside a score within float error of its neighbour (a product over fewer
        # columns may round differently in the last place); popularity's scores are exact copies
        near = np.abs(np.diff(whole[1], axis=1)) < 1e-5
        unsure = np.pad(near, ((0, 0), (1, 0))) | np.pad(near, ((0, 0), (0, 1)))
        if fitted.name == "Popularity":
            unsure[:] = False
        assert unsure.mean() < 0.2 and np.array_equal(chunked[0][~unsure], whole[0][~unsure])


@parametrize_fitted
def test_a_count_of_the_wrong_kind_or_below_one_is_named_before_scoring(fitted, split):
    """top_n(history, "5") and top_n(batch_size=0) failed inside (a comparison of str and int, range()'s "arg 3
    must not be zero"); recommend names implicit's N."""
    from recvae.errors import ParameterError

    history = split.test.fold_in[:3]
    for call, words in ((lambda: fitted.top_n(history, "5"), "n='5': must be a whole number"),
                        (lambda: fitted.top_n(history, 5, batch_size=0), "batch_size=0: must be at least 1"),
                        (lambda: fitted.top_n(history, 5, batch_size=2.5), "batch_size=2.5: must be a whole number"),
                        (lambda: fitted.top_n(history, 5, item_chunk=0), "item_chunk=0: must be at least 1"),
                        (lambda: fitted.recommend(0, history[0], N=0), "N=0: must be at least 1"),
                        (lambda: fitted.recommend(0, history[0], N="3"), "N='3': must be a whole number")):
        with pytest.raises(ParameterError, match=words):
            call()
    assert fitted.top_n(history, np.int64(5), batch_size=np.int64(2))[0].shape == (3, 5)  # NumPy's integers count


@parametrize_fitted
def test_empty_histories_are_scored(fitted, split):
    empty = sp.csr_matrix((2, fitted.n_items_), dtype=np.float32)
    ids, scores = fitted.recommend(np.arange(2), empty, N=7)
    assert ids.shape == (2, 7) and np.all(ids >= 0)


@parametrize_fitted
def test_float64_and_integer_input_score_as_binary_float32(fitted, split):
    history = split.test.fold_in[:5]
    expected = fitted.score(history)
    for dtype in (np.float64, np.int64, np.int32):
        np.testing.assert_allclose(fitted.score(history.astype(dtype)), expected, rtol=1e-5, atol=1e-6)
    counts = history.copy()
    counts.data[:] = 3.0  # binarize=True (the default): a count of 3 is one interaction
    np.testing.assert_allclose(fitted.score(counts), expected, rtol=1e-5, atol=1e-6)


@parametrize_fitted
def test_save_load_gives_identical_scores(fitted, split, tmp_path):
    history = split.test.fold_in[:8]
    if fitted.name == "RecBole":
        with pytest.raises(ModelFileError, match="cannot be saved"):
            fitted.save(tmp_path / "m")
        return
    loaded = Recommender.load(fitted.save(tmp_path / "m"))
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params() and loaded.items_ == split.items
    assert np.array_equal(loaded.score(history), fitted.score(history))
    assert np.array_equal(loaded.recommend(np.arange(8), history, N=10)[0], fitted.recommend(np.arange(8), history, N=10)[0])


def _columns_reversed(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The same matrix with each row's entries stored in reverse column order (not canonical)."""
    order = np.concatenate([np.arange(start, end)[::-1] for start, end in zip(matrix.indptr[:-1], matrix.indptr[1:])])
    out = sp.csr_matrix((matrix.data[order], matrix.indices[order], matrix.indptr), shape=matrix.shape)
    assert not out.has_sorted_indices
    return out


@parametrize_fitted
def test_same_seed_same_scores_however_the_matrix_is_stored(fitted, split):
    again = clone(fitted).fit(_columns_reversed(split.train), split.validation, split.items)
    history = split.test.fold_in[:10]
    assert np.array_equal(again.score(_columns_reversed(history)), fitted.score(history))


@pytest.mark.parametrize("name", NAMES)
def test_clone_gives_an_unfitted_copy_with_the_same_params(name):
    model = make(name)
    copy = clone(model)
    assert type(copy) is type(model) and copy is not model and copy.get_params() == model.get_params()
    # scikit-learn's convention: no learned attribute (ending in _) before fit
    assert not [name for name in vars(copy) if name.endswith("_") and not name.startswith("__")]
    with pytest.raises(NotFittedError):
        copy.score(sp.csr_matrix((1, 3), dtype=np.float32))


@parametrize_fitted
def test_similar_items_start_with_the_item_itself_or_say_there_are_none(fitted):
    try:
        ids, scores = fitted.similar_items(4, N=5)
    except NotImplementedError:
        assert fitted.name in ("Popularity", "RecBole")
        return
    assert len(ids) == 5 and ids[0] == 4 and len(set(ids)) == 5
    assert np.all(np.diff(scores) <= 1e-6), scores  # best first
    # implicit's batch call: an array of items gives a row per item, each the single call's
    batch_ids, batch_scores = fitted.similar_items(np.array([4, 7]), N=5)
    assert batch_ids.shape == batch_scores.shape == (2, 5)
    np.testing.assert_array_equal(batch_ids[0], ids)
    np.testing.assert_allclose(batch_scores[1], fitted.similar_items(7, N=5)[1], rtol=1e-5, atol=1e-6)
    from recvae.errors import ParameterError

    with pytest.raises(ParameterError, match="N=0: must be at least 1"):
        fitted.similar_items(4, N=0)


def test_iterative_models_are_the_ones_with_a_training_step():
    iterative = {name for name, cls in REGISTRY.items() if issubclass(cls, IterativeRecommender)}
    assert iterative == {"MultVAE", "CVAE", "MultDAE", "RecVAE", "RecBole", "VASP", "FLVAE", "NeuralEASE"}


@pytest.mark.parametrize("name", [n for n in NAMES if n != "RecBole" and issubclass(REGISTRY[registered(n)],
                                                                                   IterativeRecommender)])
def test_a_training_phase_says_truly_whether_its_loss_reaches_every_parameter(name, split):
    """Under torchrun DDP skips the search for parameters without a gradient where every phase says its loss
    reaches them all, and a parameter it would then wait for hangs or fails the run."""
    import torch

    from recvae.models.nn import SparseBatch

    model = make(name)
    train = model._training_matrix(split.train)
    generator = torch.Generator().manual_seed(0)
    step = model.start_training(train, torch.device("cpu"), generator, generator)
    model._set_fitted(train, split.items, step.module, torch.device("cpu"))
    for phase in step.phases:
        step.module.zero_grad(set_to_none=True)
        loss, _ = step.batch_loss(phase.name, SparseBatch.from_csr(train[:60], torch.device("cpu")), 0.5)
        loss.backward()
        missed = [n for n, p in step.module.named_parameters() if p.requires_grad and p.grad is None]
        assert (not missed) == phase.every_parameter, (phase.name, missed)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_default_search_space_names_real_hyperparameters(name):
    from recvae.tune import parse_space

    model_class = REGISTRY[name]
    space = parse_space(model_class.search_space, model_class.config_class, name)
    defaults = model_class.config_class()
    for dimension in space.values():  # the paper's default lies inside the range (or is one of the choices)
        default = getattr(defaults, dimension.name)
        if dimension.choices is not None or default is None:
            continue
        assert dimension.low <= default <= dimension.high, (dimension, default)


# The latent space each model has: with a posterior's standard deviation, a code without one, or none.
WITH_UNCERTAINTY = {"MultVAE", "CVAE", "RecVAE", "VASP", "FLVAE"}
WITHOUT_UNCERTAINTY = {"MultDAE", "ALS", "BPR"}
NO_LATENT_SPACE = {"EASE", "DLAE", "EDLAE", "Popularity", "NeuralEASE", "RecBole"}
DECODES = {"MultVAE", "MultDAE", "RecVAE", "FLVAE", "ALS", "BPR"}  # a position alone gives the scores


def test_every_model_says_what_latent_space_it_has():
    assert WITH_UNCERTAINTY | WITHOUT_UNCERTAINTY | NO_LATENT_SPACE == set(REGISTRY)


@parametrize_fitted
def test_encode_decode_and_item_vectors_keep_one_contract(fitted, split):
    """Each history gets its position (mean, and the posterior's standard deviation where the model has one),
    the same alone and in blocks; the mean decodes to the very scores the model gives; a group of one gets
    that user's own list; a model without a latent space says so, naming why."""
    from recvae.models.latent import NoLatentSpaceError, sample_users

    history = split.test.fold_in[:6]
    if fitted.name in NO_LATENT_SPACE:
        for call in (lambda: fitted.encode(history), fitted.item_embeddings, lambda: fitted.decode(np.zeros((1, 4))),
                     lambda: next(sample_users(fitted, 2)), lambda: next(sample_users(fitted, 2, source="prior"))):
            with pytest.raises(NoLatentSpaceError, match=rf"{fitted.name} has no latent space: \w"):
                call()
        return
    encoding = fitted.encode(history, batch_size=4)  # two blocks
    assert encoding.mean.shape[0] == 6 and encoding.mean.ndim == 2 and np.isfinite(encoding.mean).all()
    assert (encoding.std is None) == (fitted.name in WITHOUT_UNCERTAINTY)
    if encoding.std is not None:
        assert encoding.std.shape == encoding.mean.shape and (encoding.std > 0).all()
    np.testing.assert_allclose(fitted.encode(history[2:3]).mean[0], encoding.mean[2], rtol=1e-5, atol=1e-6)
    assert fitted.item_embeddings()["output"].shape[0] == len(recommendable(fitted))
    if fitted.name not in DECODES:
        with pytest.raises(NoLatentSpaceError, match="item-item path|side features"):
            fitted.decode(encoding.mean)
        return
    # a linear path beside the autoencoder reads the history, which a position does not hold: its part is added
    added = fitted._history_scorer(fitted._histories(history))
    decoded = fitted.decode(encoding.mean) + (0 if added is None else added(slice(None)).numpy())
    np.testing.assert_allclose(decoded, fitted.score(history), rtol=1e-4, atol=1e-4)
    from recvae.errors import DataError

    width = encoding.mean.shape[1]
    with pytest.raises(DataError, match=f"codes have {width + 1} dimensions; {fitted.name}'s latent space has {width}"):
        fitted.decode(np.zeros((1, width + 1)))
    group, _ = fitted.recommend_group(history[1:2], N=5)
    alone, _ = fitted.recommend(1, history[1:2], N=5)
    np.testing.assert_array_equal(group, alone)


def test_a_loaded_model_stays_on_the_cpu_unless_a_device_is_asked_for(split, tmp_path, monkeypatch):
    saved = make("MultDAE").fit(split.train, items=split.items).save(tmp_path / "m")
    monkeypatch.delenv("RECVAE_DEVICE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # a GPU machine: loading must not move there unasked
    assert Recommender.load(saved).device_.type == "cpu"
    with pytest.raises(ValueError, match="not a torch device"):
        Recommender.load(saved, device="gpu0")


def test_every_registered_model_is_importable_from_the_package():
    """``from recvae import EASE`` works as ``from recvae import MultVAE`` does (RecBole's adapter aside)."""
    import recvae

    for name, cls in REGISTRY.items():
        if name != "RecBole":
            assert getattr(recvae, name) is cls and name in recvae.__all__, name
