"""Config dataclasses: what every iteratively trained model shares, and rebuilding any config from JSON or TOML."""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from types import MappingProxyType

from recvae.defaults import SEED
from recvae.errors import ParameterError, at_least, fraction, one_of, positive, settled
from recvae.models.schedules import BETA_SCHEDULES
from recvae.score.metrics import parse_metric


@dataclass(frozen=True, kw_only=True)
class EpochConfig:
    """What every model the Trainer runs has: up to ``epochs`` epochs, stopped after ``patience`` epochs
    without a better validation ``validation_metric`` (None: every epoch), the ``seed`` of its random
    streams and its ``device`` (None: ``recvae.models.device.resolve_device``'s choice)."""

    epochs: int = 200
    patience: int | None = 20
    validation_metric: str = "ndcg@100"
    seed: int = SEED
    device: str | None = None

    def __post_init__(self):
        at_least(1, epochs=self.epochs)
        if self.patience is not None and self.patience < 1:
            raise ParameterError("patience", self.patience, "must be at least 1, or none to train every epoch")
        parse_metric(self.validation_metric)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(EpochConfig):
    """How recvae's own models train: epochs, batches, optimiser, early stopping, seed, device, precision.

    Defaults are the Mult-VAE paper's: Adam with learning rate 1e-3, batches of 500
    users, up to 200 epochs keeping the weights of the best validation NDCG@100.
    """

    batch_size: int = 500
    learning_rate: float = 1e-3
    precision: str = "fp32"

    def __post_init__(self):
        super().__post_init__()
        at_least(1, batch_size=self.batch_size)
        positive(learning_rate=self.learning_rate)
        one_of(PRECISIONS, precision=self.precision)


LIKELIHOODS = ("multinomial", "gaussian", "logistic", "focal")
# fp32, or autocast's mixed precision: matrix products in bfloat16 or float16 (with a gradient scaler)
PRECISIONS = ("fp32", "bf16", "fp16")
NEGATIVE_PROPOSALS = ("popularity", "uniform")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity", "gated")  # recvae.models.nn.ACTIVATION_FUNCTIONS implements each
PRIORS = ("standard", "vamp")
SHALLOW_STARTS = ("random", "edlae", "dlae")  # VASP's item-item path: drawn at random, or a closed form
DEEP_STARTS = ("random", "neutral")  # VASP's deep path's output layers: drawn at random, or silent


@dataclass(frozen=True, kw_only=True)
class FocalConfig:
    """The focal loss of Lin et al. (2017), as VASP (Vančura & Kordík 2021) uses it on item sigmoids: every
    item's binary cross-entropy times (1 - p_t)^``focal_gamma``, positives weighted by ``focal_alpha`` and
    negatives by 1 - ``focal_alpha`` (None: no weighting, so ``focal_gamma=0`` is binary cross-entropy)."""

    focal_gamma: float = 2.0
    focal_alpha: float | None = 0.25

    def _check_focal(self) -> None:
        at_least(0, focal_gamma=self.focal_gamma)
        if self.focal_alpha is not None and not 0.0 < self.focal_alpha < 1.0:
            raise ParameterError("focal_alpha", self.focal_alpha, "must lie in (0, 1), or be none for no class weighting")


@dataclass(frozen=True, kw_only=True)
class LikelihoodConfig(FocalConfig):
    """What the autoencoders' decoder output is scored by. ``negatives`` S > 0 replaces the multinomial's
    normalisation over every item by a sampled softmax: each batch's users' own items plus S negatives
    shared by the batch, drawn from ``negative_proposal`` (training popularity + 1, or uniform) with the
    logQ correction, so an update's decoder products cost (batch items + S) columns instead of the
    catalogue. Validation, scoring and export stay exact. ``likelihood="focal"`` scores each item's sigmoid
    by the focal loss (``FocalConfig``)."""

    likelihood: str = "multinomial"
    negatives: int = 0
    negative_proposal: str = "popularity"

    def _check_likelihood(self) -> None:
        one_of(LIKELIHOODS, likelihood=self.likelihood)
        at_least(0, negatives=self.negatives)
        if self.negatives and self.likelihood != "multinomial":
            raise ParameterError("negatives", self.negatives,
                                 f"the sampled softmax needs {{likelihood}} multinomial, not {self.likelihood!r}")
        one_of(NEGATIVE_PROPOSALS, negative_proposal=self.negative_proposal)
        self._check_focal()


@dataclass(frozen=True, kw_only=True)
class ImplicitSLIMConfig:
    """ImplicitSLIM (Shenbin & Nikolenko, ICLR 2024): before every ``implicit_slim_every``-th epoch (epochs
    N-1, 2N-1, ... from 0, as the authors' code; 0: never) the encoder's first-layer and the decoder's
    last-layer item embeddings are replaced by their closed-form refresh from a SLIM-like item-item model
    with ridge ``implicit_slim_l2`` (λ) and scale ``implicit_slim_alpha`` (α); items seen by fewer than
    ``implicit_slim_min_count`` training users do not contribute (``recvae.models.implicit_slim``)."""

    implicit_slim_every: int = 0
    implicit_slim_l2: float = 500.0
    implicit_slim_alpha: float = 1.0
    implicit_slim_min_count: int = 0

    def _check_implicit_slim(self) -> None:
        at_least(0, implicit_slim_every=self.implicit_slim_every, implicit_slim_min_count=self.implicit_slim_min_count)
        positive(implicit_slim_l2=self.implicit_slim_l2, implicit_slim_alpha=self.implicit_slim_alpha)


@dataclass(frozen=True, kw_only=True)
class LinearPathConfig:
    """A closed-form linear path beside the autoencoder: a history's scores add ``linear_weight`` times DLAE's
    (Steck 2020: the item-item weight of a linear autoencoder trained with dropout ``linear_dropout`` and ridge
    ``linear_l2``, in closed form on the training users before the first epoch). 0: none, the paper's model.
    VASP (Vančura & Kordík 2021) joins such a path to a VAE by a product of sigmoids trained together; here it is
    fixed and added, and early stopping keeps the epoch whose sum validates best. The latent space is the
    autoencoder's alone: a position decodes to the autoencoder's scores, and samples and anomaly scores are its
    own; a group's list adds the path on the group's mixed history, as a user's adds it on theirs.
    ``linear_half_length`` h > 0 scales the weight by n / (n + h) for a history of n items, so that a short
    history leans on the autoencoder (and a CVAE's features), whose list one item's neighbours would outrank."""

    linear_weight: float = 0.0
    linear_l2: float = 500.0
    linear_dropout: float = 0.5
    linear_half_length: float = 0.0

    def _check_linear_path(self) -> None:
        at_least(0, linear_weight=self.linear_weight, linear_half_length=self.linear_half_length)
        if self.linear_half_length and not self.linear_weight:
            raise ParameterError("linear_half_length", self.linear_half_length, "scales a linear path: set linear_weight")
        positive(linear_l2=self.linear_l2)
        fraction(linear_dropout=self.linear_dropout)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What every model's config has. ``binarize`` (default True): every stored interaction counts
    as 1, whatever its value (counts, ratings); False keeps the values (confidence for ALS, counts
    for the multinomial likelihood, sums for popularity). It applies to training and to every history
    scored later alike (evaluation, recommendation, export). ``describe_training_users`` (default True):
    once fitted, a model with a latent space fits a Gaussian mixture to its training users' positions (what
    ``sample`` draws from) and keeps the quantiles of their anomaly scores (what ``anomaly_scores``'
    percentile reads): up to tens of seconds on a large log; False skips both, as a study's trials and the
    benchmark's fits do (their models are scored, then thrown away)."""

    binarize: bool = True
    describe_training_users: bool = True


@dataclass(frozen=True, kw_only=True)
class _AutoEncoderConfig(TrainingConfig, LikelihoodConfig, ImplicitSLIMConfig, ModelConfig):
    hidden_dims: tuple[int, ...] = (600,)
    latent_dim: int = 200
    dropout: float = 0.5
    activation: str = "tanh"
    l2: float = 0.0
    # items' side features in the output layer (recvae.models.nn.ItemSide): their width, which fit's
    # item_features must have (train sets it from --item-features; 0: none), and DropoutNet's share of free
    # vectors dropped per update
    item_feature_width: int = 0
    item_dropout: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        at_least(0, item_feature_width=self.item_feature_width)
        fraction(item_dropout=self.item_dropout)
        if self.item_feature_width and self.implicit_slim_every:
            raise ParameterError("implicit_slim_every", self.implicit_slim_every, "refreshes free item vectors, "
                                 "which item side features add to: use one or the other")
        if any(int(d) < 1 for d in self.hidden_dims):
            raise ParameterError("hidden_dims", self.hidden_dims, "layer sizes must be at least 1")
        at_least(1, latent_dim=self.latent_dim)
        fraction(dropout=self.dropout)
        one_of(ACTIVATIONS, activation=self.activation)
        self._check_likelihood()
        self._check_implicit_slim()
        at_least(0, l2=self.l2)


@dataclass(frozen=True, kw_only=True)
class MultVAEConfig(_AutoEncoderConfig, LinearPathConfig):
    """Mult-VAE: encoder I-600-(200, 200), decoder 200-600-I, tanh, input dropout 0.5, β growing linearly
    to a cap of 0.2.

    How long β takes to reach its cap: by default ``anneal_fraction`` (0.8) of the ``epochs`` asked for, so
    the model trains as a VAE on any log; ``anneal_epochs`` gives that length in epochs; ``total_anneal_steps``
    in updates as the paper does (β = min(cap, updates / total_anneal_steps); the paper's 200,000 were sized
    for ML-20M, and reach only 1% of the cap in 200 epochs of ML-1M). ``beta_schedule`` may instead be
    "constant" (β = cap), "cyclical" (Fu et al. 2019: cycles of that length, rising to the cap over each
    cycle's first half) or "sigmoid" (a logistic ramp reaching the cap by then). ``free_bits`` > 0 floors
    each latent dimension's KL at that many nats (Kingma et al. 2016).

    ``prior``: "standard", N(0, I) as the paper; or "vamp", the VampPrior (Tomczak & Welling 2018): the
    mixture of the encoder's posteriors at ``pseudo_inputs`` learned inputs, started from as many random
    training users' histories; its KL term is a one-sample Monte-Carlo estimate, as theirs.
    ``latent_levels=2``: a two-level hierarchical latent (``recvae.models.nn.HierarchicalAutoEncoder``), as
    Kim & Suh's H+Vamp with ``prior="vamp"`` over its top level; with ``hidden_dims=[]`` every map in it is
    linear.
    """

    beta_cap: float = 0.2
    beta_schedule: str = "linear"
    anneal_fraction: float = 0.8
    anneal_epochs: float | None = None
    total_anneal_steps: int | None = None
    free_bits: float = 0.0
    prior: str = "standard"
    pseudo_inputs: int = 500
    latent_levels: int = 1

    def __post_init__(self):
        super().__post_init__()
        self._check_linear_path()
        at_least(0, beta_cap=self.beta_cap, free_bits=self.free_bits)
        at_least(1, pseudo_inputs=self.pseudo_inputs)
        one_of(BETA_SCHEDULES, beta_schedule=self.beta_schedule)
        one_of(PRIORS, prior=self.prior)
        if self.latent_levels not in (1, 2):
            raise ParameterError("latent_levels", self.latent_levels, "must be 1 or 2")
        if (self.prior == "vamp" or self.latent_levels == 2) and self.free_bits > 0:
            # free bits floor a KL per dimension, which these KL estimates have not
            raise ParameterError("free_bits", self.free_bits, "needs prior = standard and latent_levels = 1 (the "
                                 "VampPrior's and the hierarchy's KL have no per-dimension terms to floor)")
        if not 0.0 < self.anneal_fraction <= 1.0:
            raise ParameterError("anneal_fraction", self.anneal_fraction, "must lie in (0, 1]")
        if self.anneal_epochs is not None and not self.anneal_epochs > 0:
            raise ParameterError("anneal_epochs", self.anneal_epochs, "must be positive (or none)")
        if self.total_anneal_steps is not None:
            at_least(0, total_anneal_steps=self.total_anneal_steps)
            if self.anneal_epochs is not None:
                raise ParameterError("total_anneal_steps", self.total_anneal_steps,
                                     "and {anneal_epochs} both give the anneal's length: give one")


@dataclass(frozen=True, kw_only=True)
class CVAEConfig(MultVAEConfig):
    """Conditional Mult-VAE: Mult-VAE's defaults; the input's last ``conditions`` columns are each user's side
    features (``recvae.data.features``), read by the encoder and the decoder and never recommended.
    ``history_dropout``: the share of training users whose whole history is hidden from the encoder in an
    update (their features kept, their items still the target), so that the model learns to place a user
    from features alone, as a new user with no items must be."""

    conditions: int = 0
    history_dropout: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        at_least(0, conditions=self.conditions)
        fraction(history_dropout=self.history_dropout)
        for name, value, plain in (("prior", self.prior, "standard"), ("latent_levels", self.latent_levels, 1),
                                   ("negatives", self.negatives, 0), ("implicit_slim_every", self.implicit_slim_every, 0)):
            if value != plain:
                raise ParameterError(name, value, f"is not available with the conditional VAE yet (only {plain})")


@dataclass(frozen=True, kw_only=True)
class MultDAEConfig(_AutoEncoderConfig):
    """Mult-DAE: I-200-I, tanh, input dropout 0.5, L2 penalty 0.01 on the weights
    (added to the batch-mean loss, as in the authors' code)."""

    hidden_dims: tuple[int, ...] = ()
    l2: float = 0.01


@dataclass(frozen=True, kw_only=True)
class RecVAEConfig(TrainingConfig, LikelihoodConfig, ImplicitSLIMConfig, LinearPathConfig, ModelConfig):
    """The public code's defaults: 50 epochs of 3 encoder and 1 decoder passes, Adam at 5e-4."""

    epochs: int = 50
    learning_rate: float = 5e-4
    hidden_dim: int = 600
    latent_dim: int = 200
    dropout: float = 0.5
    gamma: float = 0.005
    mixture_weights: tuple[float, float, float] = (0.15, 0.75, 0.1)
    wide_logvar: float = 10.0
    encoder_epochs: int = 3
    decoder_epochs: int = 1
    layer_norm_eps: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        at_least(1, hidden_dim=self.hidden_dim, latent_dim=self.latent_dim)
        fraction(dropout=self.dropout)
        positive(gamma=self.gamma)
        if len(self.mixture_weights) != 3 or min(self.mixture_weights) <= 0 or abs(sum(self.mixture_weights) - 1) > 1e-6:
            raise ParameterError("mixture_weights", self.mixture_weights, "expected three positive weights summing to 1")
        self._check_likelihood()
        self._check_implicit_slim()
        self._check_linear_path()
        at_least(1, encoder_epochs=self.encoder_epochs, decoder_epochs=self.decoder_epochs)


@dataclass(frozen=True, kw_only=True)
class VASPConfig(TrainingConfig, FocalConfig, ModelConfig):
    """VASP as the authors' public code trains it on ML-20M: hidden layers of 4096, a code of 2048, Nadam at
    learning rate 5e-5 on batches of 1024 users, focal loss with α 0.25 and γ 2, the KL term averaged over
    the code's dimensions (``kl_weight`` times that mean is added to the per-user focal loss).

    ``deep``/``shallow`` switch the paths (FLVAE is VASP without the shallow path, Neural EASE without the
    deep one); ``split_halves`` is the augmentation (False: each history reconstructs itself). ``l2`` adds
    l2 x ||W||^2 of the item-item weight to each batch's mean loss (the public code has none: ML-20M's 136k
    training users hold its 400M weights in check, a catalogue of fewer users may need the penalty EASE has).
    The public code runs 50 epochs at 5e-5 and 40 at 1e-5; here one rate runs up to ``epochs`` with early
    stopping on the validation users.

    ``shallow_start = "edlae"`` starts the item-item weight from the closed form EDLAE (EASE when
    ``shallow_dropout`` is 0) computes on the training users with ``shallow_l2`` and ``shallow_dropout``, its
    logits scaled and offset by two learned numbers fitted first by logistic regression, so that the deep
    path learns what the linear one misses; ``shallow_trainable = False`` keeps the weight at that solution.
    ``shallow_learning_rate`` sets the item-item weight's own rate: Nadam moves every weight by about the
    rate, and a closed form's weights are of order 1e-3, which a deep path's rate would sweep away.
    ``shallow_start = "dlae"`` starts it from DLAE's closed form with the diagonal zeroed (an item's own weight
    only scores the items a user already has, so the unseen items rank as DLAE ranks them).
    ``deep_start = "neutral"`` starts the deep path's two output layers at zero weights and a large bias: its
    sigmoids start at about 1 for every item, so the model starts ranking as its shallow path alone and the
    deep path learns a correction to it (a randomly drawn output starts as noise on the closed form's ranking).
    """

    epochs: int = 90
    batch_size: int = 1024
    learning_rate: float = 5e-5
    hidden_dim: int = 4096
    latent_dim: int = 2048
    encoder_layers: int = 7
    decoder_layers: int = 5
    kl_weight: float = 1.0
    l2: float = 0.0
    deep: bool = True
    shallow: bool = True
    split_halves: bool = True
    shallow_start: str = "random"
    shallow_l2: float = 500.0
    shallow_dropout: float = 0.0
    shallow_trainable: bool = True
    shallow_learning_rate: float | None = None  # None: learning_rate
    deep_start: str = "random"

    def __post_init__(self):
        super().__post_init__()
        at_least(1, hidden_dim=self.hidden_dim, latent_dim=self.latent_dim, encoder_layers=self.encoder_layers,
                 decoder_layers=self.decoder_layers)
        at_least(0, kl_weight=self.kl_weight, l2=self.l2)
        self._check_focal()
        if not (self.deep or self.shallow):
            raise ParameterError("deep", self.deep, "and {shallow} cannot both be off: the model would have no path")
        self._check_shallow_start()

    def _check_shallow_start(self) -> None:
        one_of(SHALLOW_STARTS, shallow_start=self.shallow_start)
        if self.shallow_start != "random" and not self.shallow:
            raise ParameterError("shallow_start", self.shallow_start, "starts the shallow path, which is off")
        if not self.shallow_trainable and self.shallow_start == "random":
            raise ParameterError("shallow_trainable", False, "would hold a random weight: start it from a closed form "
                                 "(shallow_start = 'edlae' or 'dlae')")
        positive(shallow_l2=self.shallow_l2)
        if self.shallow_learning_rate is not None:
            positive(shallow_learning_rate=self.shallow_learning_rate)
        fraction(shallow_dropout=self.shallow_dropout)  # 0: EASE's closed form
        one_of(DEEP_STARTS, deep_start=self.deep_start)
        if self.deep_start != "random" and not self.deep:
            raise ParameterError("deep_start", self.deep_start, "starts the deep path, which is off")


@dataclass(frozen=True, kw_only=True)
class FLVAEConfig(VASPConfig):
    """FLVAE: VASP's deep path alone (the paper's ablation)."""

    shallow: bool = False


@dataclass(frozen=True, kw_only=True)
class NeuralEASEConfig(VASPConfig):
    """Neural EASE: VASP's shallow path alone (the paper's ablation)."""

    deep: bool = False


# float32 copies of the items x items weight a training holds: the weight, its gradient, Nadam's two moments


@dataclass(frozen=True)
class EASEConfig(ModelConfig):
    """``l2`` is the paper's lambda (500 on ML-20M); ``device`` as in TrainingConfig."""

    l2: float = 500.0
    device: str | None = None

    def __post_init__(self):
        positive(l2=self.l2)


@dataclass(frozen=True)
class DLAEConfig(ModelConfig):
    """DLAE and EDLAE (Steck, NeurIPS 2020): ``l2`` and ``dropout``, the input dropout rate whose expected
    effect the closed form takes exactly (a penalty of dropout / (1 - dropout) times each item's count).
    The paper tunes both per dataset; the defaults are ML-1M's best (lambda 500, dropout 0.5, in a grid of
    lambda 100-2000 and dropout 0.2-0.7 on the strong-generalization validation users)."""

    l2: float = 500.0
    dropout: float = 0.5
    device: str | None = None

    def __post_init__(self):
        at_least(0, l2=self.l2)
        fraction(dropout=self.dropout)
        if self.l2 == 0 and self.dropout == 0:
            raise ParameterError("l2", self.l2, "must be positive with {dropout=0}, or nothing keeps the solution "
                                 "from the identity")


@dataclass(frozen=True)
class ALSConfig(ModelConfig):
    """implicit's defaults: 100 factors, regularization 0.01, confidence ``alpha`` 1, 15 iterations."""

    factors: int = 100
    regularization: float = 0.01
    alpha: float = 1.0
    iterations: int = 15
    seed: int = SEED
    num_threads: int = 0  # implicit's: 0 uses every core; 1 makes the fit exactly reproducible

    def __post_init__(self):
        at_least(1, factors=self.factors, iterations=self.iterations)
        at_least(0, regularization=self.regularization)
        positive(alpha=self.alpha)


@dataclass(frozen=True)
class BPRConfig(ModelConfig):
    """implicit's defaults for training; the fold-in settings are recvae's."""

    factors: int = 100
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = SEED
    num_threads: int = 0  # implicit's: 0 uses every core; 1 makes the fit exactly reproducible
    fold_in_steps: int = 100
    fold_in_learning_rate: float = 0.05

    def __post_init__(self):
        at_least(1, factors=self.factors, iterations=self.iterations, fold_in_steps=self.fold_in_steps)
        positive(learning_rate=self.learning_rate, fold_in_learning_rate=self.fold_in_learning_rate)
        at_least(0, regularization=self.regularization)


@dataclass(frozen=True)
class PopularityConfig(ModelConfig):
    """No hyperparameters: items are ranked by how many training users have them (with
    ``binarize=False``, by the sum of their values)."""


# Every model the command line trains, by its REGISTRY name, with its config: the flags and their help are
# built from these without importing torch (a test holds them to REGISTRY).
MODEL_CONFIGS = MappingProxyType({
    "MultVAE": MultVAEConfig, "CVAE": CVAEConfig, "MultDAE": MultDAEConfig, "RecVAE": RecVAEConfig, "VASP": VASPConfig,
    "FLVAE": FLVAEConfig, "NeuralEASE": NeuralEASEConfig, "EASE": EASEConfig, "DLAE": DLAEConfig, "EDLAE": DLAEConfig,
    "ALS": ALSConfig, "BPR": BPRConfig,
    "Popularity": PopularityConfig,
})
# What each config field means, in a line; a test fails on a field without one. Choices come from FIELD_CHOICES.
FIELD_HELP = MappingProxyType({
    "epochs": "maximum training epochs",
    "batch_size": "users per batch",
    "learning_rate": "Adam learning rate",
    "patience": "stop after this many epochs without a better validation score ('none': never)",
    "validation_metric": "metric that picks the best epoch",
    "seed": "seed of initialisation, shuffling, dropout and noise",
    "device": "torch device, e.g. cpu or cuda (default: RECVAE_DEVICE, else cuda if present, else cpu)",
    "precision": "fp32, or bf16 / fp16: matrix products under autocast in training and scoring (losses and scores "
                 "stay float32; fp16 with a gradient scaler)",
    "hidden_dims": "hidden layer sizes between items and latent code, comma-separated ('' for none)",
    "latent_dim": "size of the latent code",
    "dropout": "dropout rate on the input",
    "activation": "the hidden layers' activation; gated: Kim & Suh (2019)'s gates, value * sigmoid(gate), each layer "
                  "twice as wide",
    "likelihood": "what scores the decoder's output: the multinomial (the paper), a Gaussian (squared error), a "
                  "logistic (per-item sigmoids) or the focal loss (VASP's)",
    "negatives": "sampled softmax: negatives shared per batch (multinomial only; 0: the full softmax over every item)",
    "negative_proposal": "sampled softmax: draw negatives by training popularity + 1 or uniformly",
    "l2": "L2 penalty on the weights",
    "beta_cap": "largest KL weight",
    "total_anneal_steps": "the anneal's length in updates, as the paper gives it (200000 for ML-20M): linear: "
                          "updates over which β would grow from 0 to 1 (it stops at the cap); sigmoid: updates to "
                          "reach the cap; cyclical: updates per cycle ('none': anneal_fraction of the epochs)",
    "anneal_fraction": "with neither anneal_epochs nor total_anneal_steps: the fraction of the epochs by which β "
                       "reaches its cap",
    "beta_schedule": "how β grows: linear (the paper), constant, cyclical or sigmoid",
    "free_bits": "floor, in nats, on each latent dimension's KL penalty (0: off)",
    "implicit_slim_every": "ImplicitSLIM: refresh the item embeddings in closed form before every N-th epoch (0: never)",
    "implicit_slim_l2": "ImplicitSLIM: ridge penalty λ of its item-item model",
    "implicit_slim_alpha": "ImplicitSLIM: scale α of the refreshed embeddings",
    "linear_weight": "Mult-VAE, CVAE, RecVAE: weight of a closed-form DLAE path added to the scores (0: none, the paper's model)",
    "linear_l2": "the linear path (--linear-weight): DLAE's ridge λ",
    "linear_dropout": "the linear path (--linear-weight): DLAE's dropout rate",
    "linear_half_length": "the linear path (--linear-weight): the history length n at which its weight is halved, "
                          "weight x n / (n + this) (0: the same weight for every history)",
    "implicit_slim_min_count": "ImplicitSLIM: items with fewer training users do not contribute",
    "prior": "Mult-VAE: the latent prior, standard (N(0, I)) or vamp (VampPrior, a mixture over learned pseudo-inputs)",
    "pseudo_inputs": "Mult-VAE with prior vamp: number of pseudo-inputs (the mixture's components)",
    "item_feature_width": "Mult-VAE, Mult-DAE, CVAE: the items' side features the decoder reads (train sets it from "
                          "--item-features; 0: none)",
    "item_dropout": "with item features: share of items per update scored by their features alone (DropoutNet)",
    "history_dropout": "CVAE: share of training users per update whose items are hidden from the encoder (features kept)",
    "conditions": "CVAE: the input's last columns that are the users' side features, not items (train sets it from "
                  "--user-features)",
    "latent_levels": "Mult-VAE: 1, or 2 for a two-level hierarchical latent (H+Vamp with prior vamp)",
    "anneal_epochs": "the anneal's length in epochs: until β reaches its cap (linear, sigmoid) or per cycle "
                     "(cyclical)",
    "hidden_dim": "RecVAE: width of the encoder's densely connected layers",
    "gamma": "RecVAE: KL weight per interaction of the user (β = gamma x history length)",
    "mixture_weights": "RecVAE: composite prior weights of N(0, I), the previous encoder's posterior, the wide normal",
    "wide_logvar": "RecVAE: log-variance of the prior's wide normal",
    "encoder_epochs": "RecVAE: encoder passes per epoch",
    "decoder_epochs": "RecVAE: decoder passes per epoch",
    "layer_norm_eps": "RecVAE: epsilon of the encoder's layer normalisation",
    "binarize": "count every interaction as 1 ('false': keep the values as weights)",
    "describe_training_users": "once fitted, keep a mixture over the training users' latent positions (sample) and "
                               "their anomaly-score quantiles ('false': skip both)",
    "factors": "ALS, BPR: latent factors",
    "regularization": "ALS, BPR: L2 regularisation",
    "alpha": "ALS: confidence weight of an interaction",
    "iterations": "ALS, BPR: training iterations",
    "fold_in_steps": "BPR: Adam steps that fold a new user in",
    "fold_in_learning_rate": "BPR: learning rate of the fold-in",
    "num_threads": "ALS, BPR: implicit's threads (0: every core; 1: an exactly reproducible fit)",
    "focal_gamma": "focal loss: (1 - p_t)^gamma down-weights items already scored well (0: cross-entropy)",
    "focal_alpha": "focal loss: weight of the positives, 1 - alpha of the negatives ('none': no weighting)",
    "encoder_layers": "VASP: densely connected layers of the deep path's encoder",
    "decoder_layers": "VASP: layers of the deep path's decoder",
    "kl_weight": "VASP: weight of the KL term (its mean over the code's dimensions)",
    "deep": "VASP: keep the deep (variational) path ('false': Neural EASE alone)",
    "shallow": "VASP: keep the shallow item-item path ('false': FLVAE alone)",
    "split_halves": "VASP: each history's random half reconstructs the other ('false': itself)",
    "shallow_start": "VASP: start the item-item path at random or from a closed form ('edlae', EASE at dropout 0; "
                     "'dlae', its diagonal zeroed)",
    "shallow_l2": "VASP: lambda of the closed form the item-item path starts from",
    "shallow_dropout": "VASP: dropout rate of that closed form (EDLAE's; 0: EASE)",
    "shallow_trainable": "VASP: train the item-item path ('false': keep it at the closed form)",
    "shallow_learning_rate": "VASP: the item-item weight's own learning rate ('none': learning_rate)",
    "deep_start": "VASP: the deep path's output layers drawn at random, or 'neutral' (every item's sigmoid near 1)",
})
FIELD_CHOICES = MappingProxyType({"likelihood": LIKELIHOODS, "activation": ACTIVATIONS, "beta_schedule": BETA_SCHEDULES,
                                  "precision": PRECISIONS, "negative_proposal": NEGATIVE_PROPOSALS,
                                  "prior": PRIORS, "shallow_start": SHALLOW_STARTS,
                                  "deep_start": DEEP_STARTS})


def config_from_dict(config_class: type, values: dict):
    """Rebuild a config dataclass from JSON: lists become tuples where the field is a tuple (``checked_settings``)."""
    return config_class(**checked_settings(config_class, values))


def checked_settings(config_class: type, values: dict, owner: str | None = None) -> dict:
    """``values`` as ``config_class`` takes them, each checked against its field's type before the config's own
    range checks, so that ``epochs="10"`` or ``hidden_dims=600`` is a ``ParameterError`` naming the setting (not
    a ``TypeError`` from inside a comparison); lists become tuples where the field is a tuple. A name the config
    lacks is a ``TypeError`` (as for any unknown keyword) naming ``owner`` and the closest setting."""
    hints = typing.get_type_hints(config_class)
    checked = {}
    for name, value in values.items():
        if name not in hints:
            close = difflib.get_close_matches(name, list(hints), n=1)
            raise TypeError(f"{owner or config_class.__name__} has no setting {name!r}"
                            + (f" (did you mean {close[0]!r}?)" if close else f"; its settings: {', '.join(hints)}"))
        checked[name] = settled(name, hints[name], value)
    return checked
