"""Recommenders behind one interface (fit / recommend / top_n / similar_items / save / load).

``REGISTRY`` maps every model's name (``MultVAE``, ``EASE``, ...) to its class: the names
``Recommender.load``, ``recvae train --model`` and benchmark files use.
"""

from recvae.models.als import ALS, ALSConfig
from recvae.models.bpr import BPR, BPRConfig
from recvae.models.ease import EASE, EASEConfig
from recvae.models.iterative import IterativeRecommender
from recvae.models.multvae import MultDAE, MultDAEConfig, MultVAE, MultVAEConfig
from recvae.models.popularity import Popularity, PopularityConfig
from recvae.models.rec_vae import RecVAE, RecVAEConfig
from recvae.models.recbole import RecBoleConfig, RecBoleModel
from recvae.models.recommender import Recommender
from recvae.models.registry import REGISTRY, model_class
from recvae.models.training import Trainer, TrainingStep
from recvae.models.vasp import FLVAE, VASP, FLVAEConfig, NeuralEASE, NeuralEASEConfig, VASPConfig

__all__ = [
    "ALS", "ALSConfig", "BPR", "BPRConfig", "EASE", "EASEConfig", "IterativeRecommender", "MultDAE", "MultDAEConfig",
    "MultVAE", "MultVAEConfig", "Popularity", "PopularityConfig", "REGISTRY", "RecBoleConfig", "RecBoleModel",
    "RecVAE", "RecVAEConfig", "Recommender", "Trainer", "TrainingStep", "FLVAE", "FLVAEConfig", "NeuralEASE",
    "NeuralEASEConfig", "VASP", "VASPConfig", "model_class",
]
