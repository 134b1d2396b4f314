"""Recommenders behind one interface (fit / recommend / top_n / save / load)."""

from recvae.models.base import Recommender
from recvae.models.ease import EASE, EASEConfig
from recvae.models.multvae import MultDAE, MultDAEConfig, MultVAE, MultVAEConfig
from recvae.models.popularity import Popularity

MODELS = {cls.name: cls for cls in (MultVAE, MultDAE, EASE, Popularity)}

__all__ = ["EASE", "EASEConfig", "MODELS", "MultDAE", "MultDAEConfig", "MultVAE", "MultVAEConfig", "Popularity", "Recommender"]
