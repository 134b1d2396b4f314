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
