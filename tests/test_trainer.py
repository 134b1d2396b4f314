"""The one Trainer: exact resume for every iterative model, figures unmoved by the refactor, one-file checkpoints."""

import hashlib

import pytest
import torch

from recvae.data import Interactions, SyntheticLog, generate_log, preprocess
from recvae.models import REGISTRY, IterativeRecommender, MultDAE, MultVAE, RecVAE
from recvae.models.training import kept_epoch
from recvae.models.training.checkpoint import CHECKPOINT
from recvae.split import strong_generalization_split
from recvae.train import Trainer, validation_scorer

RESUMABLE = {
    "MultVAE": dict(epochs=4, batch_size=100, hidden_dims=(32,), latent_dim=8, total_anneal_steps=20),
    # the log's last two item columns stand for side features, with history dropout's draws in the run
    "CVAE": dict(epochs=4, batch_size=100, hidden_dims=(32,), latent_dim=8, total_anneal_steps=20, conditions=2,
                 history_dropout=0.3),
    "MultDAE": dict(epochs=4, batch_size=100, latent_dim=16),
    "RecVAE": dict(epochs=3, batch_size=100, hidden_dim=16, latent_dim=8),
    # ImplicitSLIM's refresh count goes with the checkpoint: a resumed run refreshes at the same epochs
    "RecVAE-implicit-slim": dict(epochs=4, batch_size=100, hidden_dim=16, latent_dim=8, implicit_slim_every=3,
                                 implicit_slim_l2=20.0),
    "MultVAE-hvamp": dict(epochs=4, batch_size=100, hidden_dims=(32,), latent_dim=4, latent_levels=2, prior="vamp",
                          pseudo_inputs=8, total_anneal_steps=20),
    "RecBole": dict(model="MultiVAE", epochs=3, params={"mlp_hidden_size": [32], "latent_dimension": 16}),
    "VASP": dict(epochs=3, batch_size=100, hidden_dim=16, latent_dim=8, encoder_layers=2, decoder_layers=2),
    "FLVAE": dict(epochs=3, batch_size=100, hidden_dim=16, latent_dim=8, encoder_layers=2, decoder_layers=2),
    "NeuralEASE": dict(epochs=3, batch_size=100),
}


@pytest.fixture(scope="module")
def split():
    log = generate_log(SyntheticLog(n_users=300, n_items=120, n_groups=4, median_activity=15, seed=3))
    return strong_generalization_split(Interactions.from_frame(preprocess(log)), 40, seed=2)


def saved_tensors(model) -> dict[str, torch.Tensor]:
    """The model's weights by name, in name order, less RecVAE's prior copy (not part of the saved model)."""
    state = model.module_.state_dict()
    return {key: state[key].detach().cpu() for key in sorted(state) if not key.startswith("old_encoder")}


def weights_sha256(model) -> str:
    digest = hashlib.sha256()
    for key, tensor in saved_tensors(model).items():
        digest.update(key.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_every_iterative_model_is_covered():
    assert {n for n, c in REGISTRY.items() if issubclass(c, IterativeRecommender)} == {n.split("-")[0] for n in RESUMABLE}


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_interrupted_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(name, split, tmp_path):
    if name == "RecBole":
        pytest.importorskip("recbole")
    cls, params = REGISTRY[name.split("-")[0]], RESUMABLE[name]  # "Model-variant": the model with an option
    validation = validation_scorer(split.validation, "ndcg@100")
    straight = cls(**params).fit(split.train, validation, trainer=Trainer())

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cls(**params).fit(split.train, validation, trainer=Trainer(checkpoint_dir=tmp_path, callbacks=(interrupt,)))
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # one file, no temporaries left
    resumed = cls(**params).fit(split.train, validation, trainer=Trainer(checkpoint_dir=tmp_path, resume=True))
    assert [r["epoch"] for r in resumed.history_] == [r["epoch"] for r in straight.history_]
    for a, b in zip(straight.history_, resumed.history_):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["val_ndcg@100"] == b["val_ndcg@100"]
    assert weights_sha256(resumed) == weights_sha256(straight)


def test_a_stale_temporary_checkpoint_is_removed_on_resume(split, tmp_path):
    params = RESUMABLE["MultDAE"]
    MultDAE(**{**params, "epochs": 1}).fit(split.train, trainer=Trainer(checkpoint_dir=tmp_path))
    orphan = tmp_path / f".{CHECKPOINT}.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    MultDAE(**{**params, "epochs": 2}).fit(split.train, trainer=Trainer(checkpoint_dir=tmp_path, resume=True))
    assert not orphan.exists()


def weight_summary(model) -> dict[str, tuple[float, float]]:
    """Each saved tensor's sum and Euclidean norm: a fingerprint of training that survives the last-bit
    differences between CPUs' kernels (AVX-512 against AVX2), which a hash of the bytes does not."""
    return {key: (float(tensor.double().sum()), float(tensor.double().norm()))
            for key, tensor in saved_tensors(model).items()}


# Recorded with the code whose weights were bit-identical to the trainer refactor's parent (b2a5003) on an
# AVX-512 CPU (sha256 of the bytes, this test until then), here on an AVX2 one: one loop serving every model
# must train what the three loops trained. A changed batch order, random draw or update moves these far more
# than the tolerance, which only absorbs kernels' rounding.
BEFORE_REFACTOR = {
    "MultVAE": {
        "decoder.0.bias": (-0.021255316794849932, 0.06542372293814668),
        "decoder.0.weight": (-1.6213053234678227, 3.4556754232654217),
        "decoder.1.bias": (-0.17962029221234843, 0.11929591524378537),
        "decoder.1.weight": (-13.268963215195981, 6.937818840392148),
        "encoder.0.bias": (-0.12582633923739195, 0.050098289793455715),
        "encoder.0.weight": (-4.063973582466133, 4.751422836421098),
        "input_bias": (0.0826355698518455, 0.06114622110404329),
        "input_weight": (2.7362358083046274, 7.076550573213508),
    },
    "MultDAE": {
        "decoder.0.bias": (-0.25469506668741815, 0.12213790364155451),
        "decoder.0.weight": (-4.613388254016172, 3.7942859228224393),
        "input_bias": (0.07225124130491167, 0.02834349709790489),
        "input_weight": (-0.4019502114097122, 3.7353963567936406),
    },
    "RecVAE": {
        "decoder.bias": (-0.043182965891901404, 0.04050449975329417),
        "decoder.weight": (-2.327319613104919, 3.781595922875994),
        "encoder.dense.0.bias": (-0.023234391206642613, 0.026623654146743156),
        "encoder.dense.0.weight": (-0.6211986053967848, 4.299635013062465),
        "encoder.dense.1.bias": (-0.004228789359331131, 0.02989203648379858),
        "encoder.dense.1.weight": (5.832592363556614, 3.93046701208743),
        "encoder.dense.2.bias": (-0.005526941677089781, 0.03069238110685828),
        "encoder.dense.2.weight": (1.1904189717388363, 4.025451303449087),
        "encoder.dense.3.bias": (-0.023654340591747314, 0.03161791425264481),
        "encoder.dense.3.weight": (6.013140529743396, 4.0317507101829895),
        "encoder.input_bias": (-0.018470958835678175, 0.031246106756725973),
        "encoder.input_weight": (-7.68399887419946, 5.276278643771506),
        "encoder.logvar.bias": (-0.09923601895570755, 0.035220811609421324),
        "encoder.logvar.weight": (0.7008212078362703, 3.094062804129621),
        "encoder.mu.bias": (-0.0023767617531120777, 0.0272366983701131),
        "encoder.mu.weight": (4.67735555395484, 3.267825382416262),
        "encoder.norms.0.bias": (-0.02102437717257999, 0.031769375414743506),
        "encoder.norms.0.weight": (15.990076959133148, 3.997642804419561),
        "encoder.norms.1.bias": (-0.026912560628261417, 0.026560160358731343),
        "encoder.norms.1.weight": (15.979298293590546, 3.994934797977507),
        "encoder.norms.2.bias": (-0.016492285998538136, 0.03064458522500953),
        "encoder.norms.2.weight": (15.982793271541595, 3.9958212902914907),
        "encoder.norms.3.bias": (-0.012909220313304104, 0.031101630843516463),
        "encoder.norms.3.weight": (15.976093769073486, 3.9941264476112743),
        "encoder.norms.4.bias": (0.02000786561984569, 0.04141528062636768),
        "encoder.norms.4.weight": (15.813652753829956, 3.9534258401014664),
        "log_weights": (-4.487387180328369, 2.997286024667668),
    },
}


def test_the_trainer_trains_the_same_weights_as_before_the_refactor(split):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # recorded with one thread
    try:
        models = {
            "MultVAE": MultVAE(epochs=3, batch_size=50, total_anneal_steps=20, hidden_dims=(32,), latent_dim=8),
            "MultDAE": MultDAE(epochs=3, batch_size=50, latent_dim=8),
            "RecVAE": RecVAE(epochs=2, batch_size=50, hidden_dim=16, latent_dim=8),
        }
        found = {name: weight_summary(m.fit(split.train, split.validation)) for name, m in models.items()}
    finally:
        torch.set_num_threads(threads)
    assert set(found) == set(BEFORE_REFACTOR)
    for name, summary in found.items():
        assert list(summary) == list(BEFORE_REFACTOR[name]), name
        for key, values in summary.items():
            assert values == pytest.approx(BEFORE_REFACTOR[name][key], rel=1e-4, abs=1e-5), f"{name}.{key}"


def test_models_without_epochs_take_no_trainer(split):
    with pytest.raises(TypeError, match="trainer"):
        REGISTRY["EASE"]().fit(split.train, trainer=Trainer())


def test_a_run_whose_anneal_follows_its_epochs_is_not_extended_with_other_epochs(split, tmp_path):
    from recvae.errors import ModelFileError

    params = dict(batch_size=100, hidden_dims=(32,), latent_dim=8, patience=None)
    MultVAE(epochs=2, **params).fit(split.train, trainer=Trainer(checkpoint_dir=tmp_path / "default"))
    # β would change midway: the message names the setting, as the checkpoint has it and as asked now
    with pytest.raises(ModelFileError, match=r"another model or config: anneal_epochs=1\.6 \(now 3\.2\); resume with"):
        MultVAE(epochs=4, **params).fit(split.train, trainer=Trainer(checkpoint_dir=tmp_path / "default", resume=True))
    fixed = dict(params, anneal_epochs=3.0)
    MultVAE(epochs=2, **fixed).fit(split.train, trainer=Trainer(checkpoint_dir=tmp_path / "fixed"))
    longer = MultVAE(epochs=4, **fixed).fit(split.train, trainer=Trainer(checkpoint_dir=tmp_path / "fixed", resume=True))
    assert [r["epoch"] for r in longer.history_] == [1, 2, 3, 4]


def test_a_loss_that_is_no_longer_a_number_stops_training_with_the_reason(split, monkeypatch):
    from recvae.errors import TrainingDivergedError
    from recvae.models import multvae

    calls = {"n": 0}
    batch_loss = multvae.AutoEncoderStep.batch_loss

    def poisoned(self, phase, batch, beta):
        loss, terms = batch_loss(self, phase, batch, beta)
        calls["n"] += 1
        if calls["n"] > 3:  # epoch 1's three batches are finite, epoch 2's are not
            loss = loss * float("nan")
            terms = {**terms, "loss": float("nan")}
        return loss, terms

    monkeypatch.setattr(multvae.AutoEncoderStep, "batch_loss", poisoned)
    model = MultVAE(epochs=5, batch_size=100, hidden_dims=(), latent_dim=8)
    assert split.train.shape[0] <= 300
    with pytest.raises(TrainingDivergedError, match=r"MultVAE: the training loss was nan in epoch 2"):
        model.fit(split.train, split.validation, split.items)


def test_the_kept_epoch_read_from_a_history_is_the_one_whose_weights_the_fit_kept(split):
    model = MultDAE(epochs=5, batch_size=100, latent_dim=16, patience=None, seed=0).fit(split.train, split.validation)
    kept = kept_epoch(model.history_, "ndcg@100")
    scores = [record["val_ndcg@100"] for record in model.history_]
    assert kept["val_ndcg@100"] == max(scores) and kept["epoch"] == model.history_[scores.index(max(scores))]["epoch"]
    assert validation_scorer(split.validation, "ndcg@100")(model)["ndcg@100"] == pytest.approx(kept["val_ndcg@100"])
    assert kept_epoch([{"epoch": 1, "loss": 2.0}], "ndcg@100") is None


def test_a_callback_that_returns_true_ends_the_training_after_that_epoch_keeping_the_best(split):
    """A user's own stopping rule (a time budget, a target score): the fit ends as early stopping ends it."""
    seen = []

    def stop_at_three(record):
        seen.append(record["epoch"])
        return record["epoch"] == 3

    model = MultDAE(epochs=10, batch_size=100, latent_dim=8, patience=None).fit(
        split.train, validation_scorer(split.validation, "ndcg@100"), trainer=Trainer(callbacks=(stop_at_three, print)))
    assert seen == [1, 2, 3] and [r["epoch"] for r in model.history_] == [1, 2, 3]
    best = max(r["val_ndcg@100"] for r in model.history_)  # the weights kept are the best epoch's, not the last's
    assert validation_scorer(split.validation, "ndcg@100")(model)["ndcg@100"] == pytest.approx(best, abs=1e-6)


def test_a_trainer_of_the_wrong_kind_is_named_before_any_epoch(split, tmp_path):
    """callbacks=print failed after the first epoch ("not iterable"), a callback that is no function likewise;
    progress="no" showed a bar and resume="yes" resumed; checkpoint_dir=5 was os's "expected str, bytes or
    os.PathLike"; trainer="x" an AttributeError on .run."""
    from pathlib import Path

    from recvae.errors import ParameterError

    for build, words in ((lambda: Trainer(callbacks=print), "callbacks=<built-in function print>: expected a sequence"),
                         (lambda: Trainer(callbacks=(5,)), r"callbacks=\(5,\): expected a sequence of functions"),
                         (lambda: Trainer(progress="no"), "progress='no': must be true or false"),
                         (lambda: Trainer(resume="yes"), "resume='yes': must be true or false"),
                         (lambda: Trainer(checkpoint_dir=5), "checkpoint_dir=5: must be text")):
        with pytest.raises(ParameterError, match=words):
            build()
    with pytest.raises(TypeError, match="trainer must be a recvae.models.Trainer, not str"):
        MultDAE(epochs=1).fit(split.train, trainer="x")
    seen = []
    trainer = Trainer(checkpoint_dir=Path(tmp_path / "ck"), callbacks=[seen.append], progress=False)
    MultDAE(epochs=2, hidden_dims=(8,), latent_dim=4).fit(split.train, split.validation, split.items, trainer=trainer)
    assert len(seen) == 2 and (tmp_path / "ck").is_dir()
