"""RecBole's models behind recvae's interface, for benchmarks (``pip install recvae[recbole]``).

A RecBole model is trained on exactly the training matrix it is given (written as a RecBole
atomic file, no filtering, no split) and scores any history by fold-in, so held-out users go
through recvae's own ranking and metric code:

- autoencoders (MultiVAE, MultiDAE, RecVAE): their own forward pass on the history row;
- EASE: the history times its item-item matrix;
- BPR, LightGCN: no user outside the training graph has an embedding, so users are folded in as
  for recvae's BPR (``recvae.models.bpr.bpr_fold_in``), against the frozen item embeddings the
  model scores with (LightGCN's after propagation), without biases.

Training follows RecBole's trainer epoch by epoch with RecBole's defaults for the model, but the
epoch is chosen as for recvae's models: validation users are scored after every epoch and the best
state is kept (``patience`` epochs without improvement stop it).

RecBole 1.2.1 needs shims, applied here only: NumPy 2 removed ``np.float``, which RecBole still
names (its own compatibility hook assigns the also-removed ``np.float_``), so ``np.float = float``
when absent; LightGCN calls ``dok_matrix._update``, gone from SciPy 1.15, which gets it back; its ``Config`` parses ``sys.argv``, which holds recvae's flags, so this adapter's config
ignores the command line; its trainer opens a TensorBoard writer under ./log_tensorboard, which
gets a no-op writer instead. The best epoch's weights stay in memory, so RecBole's checkpoint reload
(``torch.load`` without ``weights_only=False``, refused by torch >= 2.6) is never called, and
``recbole.quick_start``, whose ray 2.6 imports the removed ``pkg_resources``, is never imported.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from recvae.errors import ModelFileError
from recvae.models.bpr import bpr_fold_in
from recvae.models.config import EpochConfig, ModelConfig
from recvae.models.iterative import IterativeRecommender
from recvae.models.training.step import Phase, TrainingPlan, TrainingStep

log = logging.getLogger(__name__)

FOLD_IN = {
    "MultiVAE": "autoencoder", "MultiDAE": "autoencoder", "RecVAE": "autoencoder",
    "EASE": "ease", "BPR": "embedding", "LightGCN": "embedding",
}


def recbole_missing() -> str | None:
    """None when RecBole can be imported, else a one-line reason."""
    try:
        _import_recbole()
    except ImportError as exc:
        return f"RecBole is not installed ({exc}); pip install recvae[recbole]"
    return None


def _import_recbole():
    if not hasattr(np, "float"):
        np.float = float  # RecBole's Interaction names np.float (removed in NumPy 1.24)
    if not hasattr(sp.dok_matrix, "_update"):
        # LightGCN fills its adjacency matrix through dok_matrix._update, gone from SciPy >= 1.15
        sp.dok_matrix._update = lambda self, values: self._dict.update(values)
    import recbole.config
    import recbole.data
    import recbole.trainer.trainer
    import recbole.utils

    return recbole


class _NoTensorBoard:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@dataclass(frozen=True, kw_only=True)
class RecBoleConfig(EpochConfig, ModelConfig):
    """``model``: a RecBole model name; ``params``: RecBole settings over its defaults for that model.

    The Trainer's options (``EpochConfig``): ``epochs`` (RecBole's default, 300; 1 for its closed-form
    models), ``patience``, ``validation_metric``, ``seed``.
    """

    model: str = "MultiVAE"
    params: dict = field(default_factory=dict)
    epochs: int = 300
    fold_in_steps: int = 100
    fold_in_learning_rate: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        if self.model not in FOLD_IN:
            raise ValueError(f"RecBole model {self.model!r} has no fold-in here; supported: {sorted(FOLD_IN)}")
        if "epochs" in self.params:
            raise ValueError("set epochs on the adapter (RecBoleConfig.epochs), not in RecBole's params")


def _rng_tensors() -> dict[str, torch.Tensor]:
    """The global generators RecBole draws from: torch's, NumPy's (its negative samplers) and Python's."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy.keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy.rest": torch.tensor([position, has_gauss, gauss], dtype=torch.float64),
        "python": torch.tensor(np.frombuffer(json.dumps(random.getstate()).encode(), dtype=np.uint8).copy()),
    }


def _set_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch"])
    position, has_gauss, gauss = tensors["numpy.rest"].tolist()
    np.random.set_state(("MT19937", tensors["numpy.keys"].numpy().astype(np.uint32), int(position), int(has_gauss), gauss))
    state = json.loads(tensors["python"].numpy().tobytes())
    random.setstate((state[0], tuple(state[1]), state[2]))


class RecBoleStep(TrainingStep):
    """An epoch is one pass of RecBole's own trainer over its own data loader."""

    phases = (Phase("recbole", batched=False),)

    def __init__(self, trainer, train_data, n_users: int, epochs: int):
        self.trainer = trainer
        self.train_data = train_data
        self.module = trainer.model
        self.n_users = n_users
        self.epochs = epochs

    def train_pass(self, phase: str, epoch: int) -> dict[str, float]:
        loss = self.trainer._train_epoch(self.train_data, epoch, show_progress=False)
        total = float(np.sum(loss)) if loss is not None else float("nan")
        return {"loss": total * self.n_users, "users": self.n_users}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"recbole": self.trainer.optimizer}

    def extra_state(self) -> dict[str, torch.Tensor]:
        tensors = {f"rng.{k}": v for k, v in _rng_tensors().items()}
        tensors["rng.loader"] = self.train_data.generator.get_state()
        if isinstance(getattr(self.module, "update", None), int):  # MultiVAE's KL-anneal counter lives outside its state_dict
            tensors["anneal_updates"] = torch.tensor(self.module.update)
        return tensors

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        _set_rng({k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.") and k != "rng.loader"})
        self.train_data.generator.set_state(tensors["rng.loader"])
        if "anneal_updates" in tensors:
            self.module.update = int(tensors["anneal_updates"])


class RecBoleModel(IterativeRecommender):
    name = "RecBole"
    config_class = RecBoleConfig
    no_latent_space = "the adapter scores through RecBole's own model, whose code it does not read"

    def start_training(self, user_items, device, generator, device_generator, item_features=None) -> RecBoleStep:
        recbole = _import_recbole()
        c = self.config
        with tempfile.TemporaryDirectory(prefix="recvae-recbole-") as tmp:
            rb_config, dataset, train_data = self._recbole_data(recbole, user_items, Path(tmp))
        model_class = recbole.utils.get_model(c.model)
        recbole.utils.init_seed(c.seed, True)
        model = model_class(rb_config, dataset).to(rb_config["device"])
        tokens = dataset.field2token_id[dataset.iid_field]
        self.columns_ = torch.tensor([tokens.get(str(j), -1) for j in range(user_items.shape[1])])
        trainer_module = recbole.trainer.trainer
        real = trainer_module.get_tensorboard
        trainer_module.get_tensorboard = lambda logger: _NoTensorBoard()
        try:
            trainer = recbole.utils.get_trainer(rb_config["MODEL_TYPE"], c.model)(rb_config, model)
        finally:
            trainer_module.get_tensorboard = real
        epochs = 1 if rb_config["MODEL_TYPE"] == recbole.utils.ModelType.TRADITIONAL else c.epochs
        return RecBoleStep(trainer, train_data, user_items.shape[0], epochs)

    def _recbole_data(self, recbole, user_items: sp.csr_matrix, folder: Path):
        coo = user_items.tocoo()
        (folder / "recvae").mkdir()
        with open(folder / "recvae" / "recvae.inter", "w") as handle:
            handle.write("user_id:token\titem_id:token\n")
            handle.writelines(f"{u}\t{i}\n" for u, i in zip(coo.row, coo.col))

        class Config(recbole.config.Config):
            def _load_cmd_line(self):  # sys.argv holds recvae's flags, not RecBole's
                return {}

            def compatibility_settings(self):  # assigns aliases NumPy 2 removed; see _import_recbole
                pass

        settings = {
            "data_path": str(folder), "checkpoint_dir": str(folder), "seed": self.config.seed, "reproducibility": True,
            "load_col": {"inter": ["user_id", "item_id"]}, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
            "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
            "eval_args": {"split": {"RS": [1.0, 0.0, 0.0]}, "order": "RO", "group_by": "user", "mode": "full"},
            "show_progress": False, "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
            "use_gpu": torch.cuda.is_available(), **self.config.params,
        }
        rb_config = Config(model=self.config.model, dataset="recvae", config_dict=settings)
        dataset = recbole.data.create_dataset(rb_config)
        built = dataset.build()
        train_sampler, _, _ = recbole.data.utils.create_samplers(rb_config, dataset, built)
        train_data = recbole.data.utils.get_dataloader(rb_config, "train")(rb_config, built[0], train_sampler, shuffle=True)
        return rb_config, dataset, train_data

    def _item_scorer(self, user_items: sp.csr_matrix):
        scores = self._recbole_scores(user_items)  # RecBole scores its whole catalogue at once
        return lambda items: scores[:, items]

    def _recbole_scores(self, user_items: sp.csr_matrix) -> torch.Tensor:
        kind = FOLD_IN[self.config.model]
        model = self.module_
        model.eval()
        known = self.columns_ >= 0
        dense = torch.zeros(user_items.shape[0], model.n_items)
        coo = user_items.tocoo()
        mapped = self.columns_[torch.from_numpy(coo.col.astype(np.int64))]
        keep = mapped >= 0
        dense[torch.from_numpy(coo.row.astype(np.int64))[keep], mapped[keep]] = 1.0
        with torch.no_grad():
            if kind == "autoencoder":
                args = (dense, 0.0) if self.config.model == "RecVAE" else (dense,)
                out = model(*args)
                scores = out[0] if isinstance(out, tuple) else out
            elif kind == "ease":
                scores = dense @ torch.from_numpy(np.asarray(model.item_similarity, dtype=np.float32))
            else:
                item_embeddings = model.forward()[1] if self.config.model == "LightGCN" else model.item_embedding.weight
                item_embeddings = item_embeddings.detach().float().cpu()
                csr = sp.csr_matrix((np.ones(int(keep.sum())), (coo.row[keep.numpy()], mapped[keep].numpy())),
                                    shape=dense.shape)
                users = bpr_fold_in(csr, item_embeddings, None, 0.0, self.config.fold_in_steps,
                                    self.config.fold_in_learning_rate, self.config.seed)
                scores = users @ item_embeddings.T
        out = torch.full((user_items.shape[0], self.n_items_), -torch.inf)
        out[:, known] = scores.float().cpu()[:, self.columns_[known]]
        return out

    def training_plan(self) -> TrainingPlan:
        """RecBole batches, places and times its own training; the Trainer runs its epochs and early stopping."""
        c = self.config
        return TrainingPlan(epochs=c.epochs, batch_size=1, patience=c.patience, validation_metric=c.validation_metric,
                            seed=c.seed, device=torch.device("cpu"), binarize=c.binarize, identity=self._identity())

    def _new_module(self, n_items: int) -> torch.nn.Module:
        raise ModelFileError("RecBole models cannot be loaded from recvae model directories")

    def _saved_tensors(self) -> dict[str, torch.Tensor]:
        raise ModelFileError("RecBole models are for benchmarks and cannot be saved as recvae model directories")
