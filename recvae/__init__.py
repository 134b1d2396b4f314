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
    "MultDAE": "recvae.models",
    "MultDAEConfig": "recvae.models",
    "CVAE": "recvae.models",
    "MultVAE": "recvae.models",
    "MultVAEConfig": "recvae.models",
    "Popularity": "recvae.models",
    "Recommender": "recvae.models",
    "presplit": "recvae.split",
    "random_holdout_split": "recvae.split",
    "strong_generalization_split": "recvae.split",
}
__all__ = sorted(_EXPORTS) + ["__version__", "evaluate"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
