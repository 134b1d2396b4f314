"""recvae: variational autoencoders for collaborative filtering."""

from __future__ import annotations

from recvae._lazy import lazy_exports

from recvae.defaults import VERSION as __version__
# Not lazy: the subpackage recvae.evaluate, once imported, would otherwise stand where the function should.
from recvae.evaluate import evaluate

_EXPORTS = {
    "Interactions": "recvae.data",
    "Preprocessing": "recvae.data",
    "Vocabulary": "recvae.data",
    "generate_log": "recvae.data",
    "preprocess": "recvae.data",
    "read_interactions": "recvae.data",
    "read_lightgcn": "recvae.data",
    "DataError": "recvae.errors",
    "ModelFileError": "recvae.errors",
    "NotFittedError": "recvae.errors",
    "ParameterError": "recvae.errors",
    # every model of the registry but RecBole's adapter (recvae.models.RecBoleModel, an optional dependency)
    "ALS": "recvae.models",
    "BPR": "recvae.models",
    "CVAE": "recvae.models",
    "DLAE": "recvae.models",
    "EASE": "recvae.models",
    "EDLAE": "recvae.models",
    "FLVAE": "recvae.models",
    "MultDAE": "recvae.models",
    "MultDAEConfig": "recvae.models",
    "MultVAE": "recvae.models",
    "MultVAEConfig": "recvae.models",
    "NeuralEASE": "recvae.models",
    "Popularity": "recvae.models",
    "RecVAE": "recvae.models",
    "Recommender": "recvae.models",
    "VASP": "recvae.models",
    "presplit": "recvae.split",
    "random_holdout_split": "recvae.split",
    "strong_generalization_split": "recvae.split",
}
__all__ = sorted(_EXPORTS) + ["__version__", "evaluate"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
