"""Recommenders behind one interface (fit / recommend / top_n / save / load)."""

from recvae.models.als import ALS, ALSConfig
from recvae.models.base import Recommender
from recvae.models.bpr import BPR, BPRConfig
from recvae.models.ease import EASE, EASEConfig
from recvae.models.multvae import MultDAE, MultDAEConfig, MultVAE, MultVAEConfig
from recvae.models.popularity import Popularity
from recvae.models.rec_vae import RecVAE, RecVAEConfig

MODELS = {cls.name: cls for cls in (MultVAE, MultDAE, RecVAE, EASE, ALS, BPR, Popularity)}

__all__ = ["ALS", "ALSConfig", "BPR", "BPRConfig", "EASE", "EASEConfig", "MODELS", "MultDAE", "MultDAEConfig", "MultVAE", "MultVAEConfig", "Popularity", "RecVAE", "RecVAEConfig", "Recommender"]
