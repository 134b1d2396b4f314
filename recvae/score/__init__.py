"""Turn a block of scores into top-N lists."""

from __future__ import annotations

from recvae._lazy import lazy_exports

_EXPORTS = {
    "top_n_from_scores": "recvae.score.topk",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
