"""Exceptions raised for bad input, so callers can catch recvae's own errors."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path


class RecvaeError(Exception):
    """Base class of every error recvae raises on purpose.

    A message may speak of a setting as ``{setting_name}`` or ``{setting_name=value}``: ``str`` names it as
    Python does, ``spoken`` in a caller's own names (the CLI passes its flags), so no caller rewrites text."""

    def __str__(self) -> str:
        return self.spoken()

    def spoken(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with each ``{setting}`` named by ``flags`` (setting → flag, e.g. ``--batch-size``)."""
        return _spelled(super().__str__(), flags)


def _spelled(text: str, flags: Mapping[str, str] | None) -> str:
    """``{name}`` and ``{name=value}`` (a value as Python writes it) spelled for Python, or with ``flags`` as
    a command line's ``--flag`` and ``--flag value`` (a switch's ``flags["name=True"]`` alone)."""
    def spell(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if flags is None:
            return name if value is None else f"{name}={value}"
        if value is not None and f"{name}={value}" in flags:  # a switch: "grouped=False" is --ungrouped
            return flags[f"{name}={value}"]
        flag = flags.get(name, name)
        return flag if value is None else f"{flag} {value}"

    # only {setting_name} is a placeholder: a path or a value quoted in a message may hold other braces
    return re.sub(r"\{([a-z_][a-z0-9_]*)(?:=([^{}]+))?\}", spell, text)


class DataError(RecvaeError, ValueError):
    """An interaction log or split cannot be used: the message names the file, line or column."""


class OutputExistsError(RecvaeError, FileExistsError):
    """An output would replace something the user did not ask to replace."""


class ModelFileError(RecvaeError):
    """A saved model directory is missing, truncated, edited or from an incompatible version."""


class NotFittedError(RecvaeError, AttributeError):
    """A model was asked to score or save before ``fit``."""


class CapacityError(RecvaeError, MemoryError):
    """A job would need more memory than the machine has; refused before allocating, with a way out."""


class TrainingDivergedError(RecvaeError):
    """A setting's training produced values that are not finite numbers (NaN factors, a NaN validation score):
    the setting is out of what the model can learn with, which a study records as a failed trial."""


class PeerLostError(RecvaeError):
    """Another process of a torchrun run stopped (killed, out of memory, its machine lost) while this one
    trained. ``checkpoint_dir``: where the run's checkpoints are, if it wrote any, to resume every process from."""

    def __init__(self, message: str, world_size: int, checkpoint_dir: str | None, cause: str = ""):
        super().__init__(message)
        self.world_size = world_size
        self.checkpoint_dir = checkpoint_dir
        self.cause = cause  # the collective's own words (gloo's, NCCL's)


class ParameterError(RecvaeError, ValueError):
    """A setting out of its range, or at odds with another setting.

    ``name`` and ``value`` are the offending setting as Python spells it; ``problem`` says what is wrong and
    writes any other setting it speaks of as ``{other_name}`` (``name`` None: the problem names them all)."""

    def __init__(self, name: str | None, value: object, problem: str):
        self.name, self.value, self.problem = name, value, problem
        super().__init__(problem)

    def spoken(self, flags: Mapping[str, str] | None = None) -> str:
        """As ``RecvaeError.spoken``, led by the setting and its value: ``name=value`` as Python writes it, or
        ``--flag value`` as a command line does."""
        problem = _spelled(self.problem, flags)
        if self.name is None:  # the problem names every setting it speaks of
            return problem
        if flags is None:
            return f"{self.name}={self.value!r}: {problem}"
        return f"{_spelled(f'{{{self.name}={as_typed(self.value)}}}', flags)}: {problem}"


class DataParameterError(ParameterError, DataError):
    """A setting the data cannot honour: both are valid alone (a rating threshold for a log without ratings,
    more held-out users than the log has, filters that leave nothing)."""


def as_typed(value: object) -> str:
    """A value as a user would have typed it: ``0`` for 0.0, ``none`` for None, strings quoted."""
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def at_least(minimum: float, **settings: float) -> None:
    """Raise ``ParameterError`` for the first of ``settings`` below ``minimum``."""
    for name, value in settings.items():
        if value < minimum:
            raise ParameterError(name, value, f"must be at least {minimum}")


def whole_at_least(minimum: int, **settings: int) -> None:
    """Raise ``ParameterError`` for the first of ``settings`` that is not a whole number of at least ``minimum``: a
    count given to a function (a batch of users, a top N), where a text or a fraction would fail deep inside."""
    for name, value in settings.items():
        if not _whole(value):
            raise ParameterError(name, value, "must be a whole number")
    at_least(minimum, **settings)


def positive(**settings: float) -> None:
    """Raise ``ParameterError`` for the first of ``settings`` that is not above 0 (NaN included)."""
    for name, value in settings.items():
        if not value > 0:
            raise ParameterError(name, value, "must be positive")


def fraction(**settings: float) -> None:
    """Raise ``ParameterError`` for the first of ``settings`` outside [0, 1) (NaN included): a share that may
    be nothing but not everything (a dropout rate, the share of users or items set aside)."""
    for name, value in settings.items():
        if not 0.0 <= value < 1.0:
            raise ParameterError(name, value, "must lie in [0, 1)")


def one_of(choices: Iterable[str], **settings: object) -> None:
    """Raise ``ParameterError`` for the first of ``settings`` not among ``choices``."""
    choices = tuple(choices)
    for name, value in settings.items():
        if value not in choices:
            raise ParameterError(name, value, f"expected one of {', '.join(map(str, choices))}")


def settle_kinds(instance) -> None:
    """Each field of the frozen dataclass ``instance`` as its annotation wants it (``settled``), before the range
    checks of its ``__post_init__``: a list where a tuple is wanted and a ``pathlib.Path`` where text is wanted are
    converted, any other value of the wrong kind is a ``ParameterError``."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if (wanted := settled(field.name, hints[field.name], value)) is not value:
            object.__setattr__(instance, field.name, wanted)


def settled(name: str, hint, value):
    """``value`` for the setting ``name`` typed ``hint``: a list (JSON's, TOML's) as a tuple where the type is a
    tuple, an ``os.PathLike`` as its text where it is text; a ``ParameterError`` where the kind is wrong
    (``kind_problem``), so that ``epochs="10"`` is named, not met as a ``TypeError`` deep inside."""
    options = _kinds(hint)
    if isinstance(value, list) and any(typing.get_origin(option) is tuple for option in options):
        value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    elif isinstance(value, os.PathLike) and str in options:
        value = os.fspath(value)
    problem = kind_problem(hint, value)
    if problem:
        raise ParameterError(name, value, problem)
    return value


def kind_problem(hint, value) -> str | None:
    """What is wrong with ``value``'s kind for a field typed ``hint`` (None: nothing). A union takes a value any
    of its kinds takes (``float | str``: a number or a text), and names the first kind's problem."""
    options = _kinds(hint)
    if value is None and type(None) in options:
        return None
    problems = [_kind_problem(kind, value) for kind in options if kind is not type(None)]
    return None if None in problems else problems[0]


def _kinds(hint) -> tuple:
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _kind_problem(kind, value) -> str | None:
    if kind in _KIND_CHECKS:
        check, problem, _, _ = _KIND_CHECKS[kind]
        return None if check(value) else problem
    if typing.get_origin(kind) is not tuple:
        return None  # a kind this check does not know: the field's own checks
    arguments = typing.get_args(kind)
    length = None if arguments[-1] is Ellipsis else len(arguments)
    elements = [k for k in _kinds(arguments[0]) if k in _KIND_CHECKS]
    described = " or ".join(_KIND_CHECKS[k][2] for k in elements) or "values"
    problem = f"must be a sequence of {length or ''}{' ' if length else ''}{described}" + (
        f", e.g. {_KIND_CHECKS[elements[0]][3]}" if len(elements) == 1 and length is None else "")
    if not isinstance(value, tuple) or length not in (None, len(value)):
        return problem
    if len(elements) == len(_kinds(arguments[0])):  # every element kind known: check each element
        if not all(any(_KIND_CHECKS[k][0](v) for k in elements) for v in value):
            return problem
    return None


# numbers' abstract types take NumPy's scalars too, without importing NumPy (the CLI builds its flags from here)
def _boolean(value) -> bool:
    return isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", None) == "b"


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not _boolean(value)


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not _boolean(value) and not math.isnan(value)


def _text(value) -> bool:
    return isinstance(value, str)


def _path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


# the checks of the kinds a setting may have: (check, problem, as a sequence's elements, an example of them)
_KIND_CHECKS = {
    bool: (_boolean, "must be true or false", "booleans", "(True, False)"),
    int: (_whole, "must be a whole number", "whole numbers", "(600,)"),
    float: (_real, "must be a number", "numbers", "(0.15, 0.75)"),
    str: (_text, "must be text", "texts", "('gender', 'age')"),
    Path: (_path, "must be a path", "paths", "('a.csv',)"),
}
