"""Recommenders behind one interface (fit / recommend / top_n / similar_items / save / load).

``REGISTRY`` maps every model's name (``MultVAE``, ``EASE``, ...) to its class: the names
``Recommender.load``, ``recvae train --model`` and benchmark files use. Each model's config lives in
``recvae.models.config``, which imports no torch.
"""

from __future__ import annotations

from recvae._lazy import lazy_exports

_EXPORTS = {
    "ALS": "recvae.models.als",
    "ALSConfig": "recvae.models.config",
    "BPR": "recvae.models.bpr",
    "BPRConfig": "recvae.models.config",
    "CVAE": "recvae.models.cvae",
    "CVAEConfig": "recvae.models.config",
    "DLAE": "recvae.models.dlae",
    "DLAEConfig": "recvae.models.config",
    "EDLAE": "recvae.models.dlae",
    "EASE": "recvae.models.ease",
    "EASEConfig": "recvae.models.config",
    "IterativeRecommender": "recvae.models.iterative",
    "MultDAE": "recvae.models.multvae",
    "MultDAEConfig": "recvae.models.config",
    "MultVAE": "recvae.models.multvae",
    "MultVAEConfig": "recvae.models.config",
    "Popularity": "recvae.models.popularity",
    "PopularityConfig": "recvae.models.config",
    "RecVAE": "recvae.models.rec_vae",
    "RecVAEConfig": "recvae.models.config",
    "RecBoleConfig": "recvae.models.recbole",
    "RecBoleModel": "recvae.models.recbole",
    "Recommender": "recvae.models.recommender",
    "REGISTRY": "recvae.models.registry",
    "model_class": "recvae.models.registry",
    "Trainer": "recvae.models.training",
    "TrainingStep": "recvae.models.training",
    "VASP": "recvae.models.vasp",
    "VASPConfig": "recvae.models.config",
    "FLVAE": "recvae.models.vasp",
    "FLVAEConfig": "recvae.models.config",
    "NeuralEASE": "recvae.models.vasp",
    "NeuralEASEConfig": "recvae.models.config",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
