"""Every model by its name: what ``Recommender.load``, the CLI, benchmark files and tune look names up in."""

from __future__ import annotations

from types import MappingProxyType

from recvae.errors import ParameterError
from recvae.models.als import ALS
from recvae.models.bpr import BPR
from recvae.models.cvae import CVAE
from recvae.models.dlae import DLAE, EDLAE
from recvae.models.ease import EASE
from recvae.models.multvae import MultDAE, MultVAE
from recvae.models.popularity import Popularity
from recvae.models.rec_vae import RecVAE
from recvae.models.recbole import RecBoleModel
from recvae.models.recommender import Recommender
from recvae.models.vasp import FLVAE, VASP, NeuralEASE

MODELS: tuple[type[Recommender], ...] = (MultVAE, CVAE, MultDAE, RecVAE, VASP, FLVAE, NeuralEASE, EASE, DLAE, EDLAE, ALS, BPR,
                                         Popularity, RecBoleModel)
REGISTRY = MappingProxyType({model.name: model for model in MODELS})
assert len(REGISTRY) == len(MODELS), "two models share a name"


def model_class(name: str) -> type[Recommender]:
    """The model registered as ``name``; an unknown name is refused with the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(REGISTRY)}") from None


# the models with items' side features in their decoder (``fit(..., item_features=)``)
ITEM_FEATURE_MODELS = tuple(model.name for model in MODELS
                            if "item_feature_width" in model.config_class.__dataclass_fields__)


def check_reads_item_features(name: str, source: object) -> None:
    """Refuse item features (from ``source``: a flag's file, a benchmark entry) for a model that cannot read them."""
    if name not in ITEM_FEATURE_MODELS:
        raise ParameterError("item_features", source, f"are read by {', '.join(ITEM_FEATURE_MODELS)} only, not by {name}")
