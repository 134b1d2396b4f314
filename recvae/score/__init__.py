"""Turn a block of scores into top-N lists."""

from __future__ import annotations

import importlib

# Imported on first use, so that what needs none of it (the command line's help) starts quickly.
_EXPORTS = {
    "top_n_from_scores": "recvae.score.topk",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
