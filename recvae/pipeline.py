"""Read -> preprocess -> split, described by two small specs that are saved with every model,
so ``recvae evaluate`` rebuilds the very split a model was trained on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from recvae.data.interactions import Interactions, Preprocessing, preprocess
from recvae.data.readers import read_interactions
from recvae.data.synthetic import SyntheticLog, generate_log
from recvae.errors import DataError
from recvae.split import Split, presplit, random_holdout_split, read_lightgcn, strong_generalization_split

PROTOCOLS = ("strong", "holdout", "presplit")


@dataclass(frozen=True)
class DataSpec:
    """Where the interactions come from. ``path=None`` is the embedded synthetic log."""

    path: str | None = None
    test_path: str | None = None
    format: str = "auto"  # "auto" (see read_interactions) or "lightgcn"
    reader: dict = field(default_factory=dict)
    preprocessing: Preprocessing = Preprocessing()
    synthetic: SyntheticLog = SyntheticLog()

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> DataSpec:
        payload = dict(payload)
        payload["preprocessing"] = Preprocessing(**payload.get("preprocessing", {}))
        payload["synthetic"] = SyntheticLog(**payload.get("synthetic", {}))
        return cls(**payload)

    def describe(self) -> str:
        return self.path if self.path is not None else "embedded synthetic log"


@dataclass(frozen=True)
class SplitSpec:
    """How to split: the protocol and its parameters (see recvae.split)."""

    protocol: str = "strong"
    heldout_users: int | None = None  # strong: per part; default 10% of users
    holdout_fraction: float = 0.2
    seed: int = 98765

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")


def read_frame(spec: DataSpec, path: str | None = None):
    path = path or spec.path
    if path is None:
        return generate_log(spec.synthetic)
    if spec.format == "lightgcn":
        return read_lightgcn(path)
    if spec.format != "auto":
        raise DataError(f"unknown data format {spec.format!r}; expected 'auto' or 'lightgcn'")
    return read_interactions(path, **spec.reader)


def prepare_split(data: DataSpec, split: SplitSpec) -> tuple[Split, Interactions | None]:
    """Read, preprocess and split; returns the split and (except for pre-split files) the full data."""
    if split.protocol == "presplit":
        if data.path is None or data.test_path is None:
            raise DataError("the presplit protocol needs a training file and a test file")
        train = preprocess(read_frame(data), dataclasses.replace(data.preprocessing, min_user_interactions=0), data.path)
        test = preprocess(read_frame(data, data.test_path), dataclasses.replace(data.preprocessing, min_user_interactions=0), data.test_path)
        return presplit(train, test), None
    if data.test_path is not None:
        raise DataError(f"a test file was given, but protocol {split.protocol!r} splits one file; use protocol 'presplit'")
    interactions = Interactions.from_frame(preprocess(read_frame(data), data.preprocessing, data.describe()))
    if split.protocol == "strong":
        n = split.heldout_users if split.heldout_users is not None else max(1, round(0.1 * interactions.n_users))
        return strong_generalization_split(interactions, n, holdout_fraction=split.holdout_fraction, seed=split.seed), interactions
    return random_holdout_split(interactions, test_fraction=split.holdout_fraction, seed=split.seed), interactions
