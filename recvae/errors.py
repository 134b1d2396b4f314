"""Exceptions raised for bad input, so callers can catch recvae's own errors."""


class RecvaeError(Exception):
    """Base class of every error recvae raises on purpose."""


class DataError(RecvaeError, ValueError):
    """An interaction log or split cannot be used: the message names the file, line or column."""


class ModelFileError(RecvaeError):
    """A saved model directory is missing, truncated, edited or from an incompatible version."""


class NotFittedError(RecvaeError, AttributeError):
    """A model was asked to score or save before ``fit``."""


class CapacityError(RecvaeError, MemoryError):
    """A job would need more memory than the machine has; refused before allocating, with a way out."""


class PeerLostError(RecvaeError):
    """Another process of a torchrun run stopped (killed, out of memory, its machine lost) while this one
    trained. ``checkpoint_dir``: where the run's checkpoints are, if it wrote any, to resume every process from."""

    def __init__(self, message: str, world_size: int, checkpoint_dir: str | None):
        super().__init__(message)
        self.world_size = world_size
        self.checkpoint_dir = checkpoint_dir
