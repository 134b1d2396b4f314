"""Search spaces: per hyperparameter a range or a list of choices, as written in a benchmark file's
``search`` table or a model's ``search_space``::

    learning_rate = { low = 1e-4, high = 1e-2, log = true }   # float (log-scaled)
    factors = { low = 16, high = 256, log = true }            # int: both bounds are integers
    hidden_dims = { choices = [[600], []] }                   # any JSON values
    l2 = [100.0, 300.0]                                       # a plain list: choices

Checked against the model's hyperparameters when read, before any training.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from recvae.errors import DataError
from recvae.models.config import config_from_dict


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range: ``low``..``high`` (ints or floats, optionally log-scaled) or ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def is_int(self) -> bool:
        return self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)

    def suggest(self, trial):
        """This dimension's value for an Optuna trial. Choices go to Optuna as JSON text: it takes only
        scalars, and a choice may be a list (layer sizes)."""
        if self.choices is not None:
            return json.loads(trial.suggest_categorical(self.name, [json.dumps(c) for c in self.choices]))
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def optuna_value(self, value):
        """``value`` as this dimension hands it to Optuna (choices as JSON text), or None when it lies outside."""
        if self.choices is not None:
            text = json.dumps(list(value) if isinstance(value, tuple) else value)
            return text if text in [json.dumps(c) for c in self.choices] else None
        if not _number(value) or not self.low <= value <= self.high:
            return None
        return int(value) if self.is_int else float(value)

    def grid_values(self) -> list:
        """The values a grid sampler walks (choices only)."""
        return [json.dumps(c) for c in self.choices]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_dimension(name: str, raw, where: str) -> Dimension:
    """One entry of a search table; ``where`` names the file and model for the error."""
    if isinstance(raw, list):
        raw = {"choices": raw}
    if not isinstance(raw, dict):
        raise DataError(f"{where}: search key {name!r}: expected {{ low = .., high = .. }}, {{ choices = [..] }} or a "
                        f"list, not {raw!r}")
    unknown = set(raw) - {"low", "high", "log", "choices"}
    if unknown:
        raise DataError(f"{where}: search key {name!r}: unknown field(s) {sorted(unknown)}; known: choices, high, log, low")
    if "choices" in raw:
        if set(raw) != {"choices"} or not isinstance(raw["choices"], list) or not raw["choices"]:
            raise DataError(f"{where}: search key {name!r}: choices must be a non-empty list, alone")
        return Dimension(name, choices=tuple(raw["choices"]))
    low, high, log = raw.get("low"), raw.get("high"), raw.get("log", False)
    if not (_number(low) and _number(high)):
        raise DataError(f"{where}: search key {name!r}: low and high must both be numbers, got {low!r} and {high!r}")
    if not low < high:
        raise DataError(f"{where}: search key {name!r}: empty range (low {low} is not below high {high})")
    if not isinstance(log, bool):
        raise DataError(f"{where}: search key {name!r}: log must be true or false, not {log!r}")
    if log and low <= 0:
        raise DataError(f"{where}: search key {name!r}: a log scale needs low > 0, not {low}")
    return Dimension(name, low=low, high=high, log=log)


def parse_space(raw: dict, config_class: type, where: str, fixed: dict | None = None) -> dict[str, Dimension]:
    """A whole search table for a model whose config is ``config_class``; every key must be one of its
    hyperparameters and not also fixed."""
    if not isinstance(raw, dict):
        raise DataError(f"{where}: search must be a table of hyperparameter ranges, not {raw!r}")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(raw) - known
    if unknown:
        raise DataError(f"{where}: search key(s) {sorted(unknown)} are not hyperparameters of the model; "
                        f"it has {sorted(known)}")
    both = set(raw) & set(fixed or {})
    if both:
        raise DataError(f"{where}: {sorted(both)} both fixed in params and searched")
    space = {name: parse_dimension(name, value, where) for name, value in raw.items()}
    for dimension in space.values():
        _check_values(dimension, config_class, fixed or {}, where)
    return space


def _check_values(dimension: Dimension, config_class: type, fixed: dict, where: str) -> None:
    """Every choice, and both ends of a range, must make a valid config (beside the fixed hyperparameters):
    a bad value is found now, not when the sampler draws it part-way through a study."""
    values = dimension.choices if dimension.choices is not None else (dimension.low, dimension.high)
    for value in values:
        try:
            config_from_dict(config_class, {**fixed, dimension.name: value})
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: search key {dimension.name!r}: the value {value!r} is not valid ({exc})") from None


def combinations(space: dict[str, Dimension]) -> int | None:
    """How many settings a space of choices holds; None when a dimension is a range."""
    if any(d.choices is None for d in space.values()):
        return None
    return math.prod(len(d.choices) for d in space.values())


def every_setting(space: dict[str, Dimension], trials: int) -> int | None:
    """The number of settings when a study of at most ``trials`` tries each of them once (a grid), else None."""
    n = combinations(space)
    return n if n is not None and n <= trials else None
