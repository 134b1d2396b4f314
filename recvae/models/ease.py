"""EASE: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

A closed-form item-item model: B = I - P diagMat(1 / diag(P)) with P = (X^T X + lambda I)^-1,
so the diagonal of B is zero.

Memory is the bound: one items x items float32 matrix (6.4 GB at 40k items) holds the Gram matrix, is
factorised (Cholesky) and inverted in place by LAPACK, and becomes B, with a workspace of a few
column blocks. A fit first estimates that and refuses a catalogue the machine cannot hold.

One eigendecomposition of the Gram matrix could serve a whole grid of lambdas (P = V diag(1/(s+lambda)) V^T),
but an eigendecomposition costs several times a Cholesky factorisation and inverse, and needs three
matrices: `scripts/benchmark_ease.py` measures it against one Cholesky fit per lambda.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from recvae.data.vocab import Vocabulary
from recvae.errors import CapacityError
from recvae.models.config import EASEConfig
from recvae.models.inputs import cosine_similar_items
from recvae.models.nn import LearnedTensors
from recvae.models.recommender import Recommender
from recvae.models.device import resolve_device


BLOCK = 2048  # columns per block when the Gram matrix is built and the inverse mirrored: the workspace


def available_memory() -> int:
    """Bytes of memory this process can still take now: the physical memory available, as the OS reports it,
    or less where a limit binds sooner: the process's address-space limit (``ulimit -v``) and its cgroup's
    memory limit (a container's), each less what is already used."""
    limits = [_physical_available()]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft - _status_kib("VmSize") * 1024)
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        limits.append(cgroup)
    return max(0, min(limits))


def _physical_available() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _status_kib(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cgroup_headroom() -> int | None:
    """The cgroup's memory limit less its usage (cgroup v2, else v1); None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # v1 writes a huge number for "no limit", v2 "max"
            return int(limit) - usage
        return None
    return None


def required_memory(n_items: int, matrices: int = 1) -> int:
    """Bytes an EASE fit over ``n_items`` needs: ``matrices`` items x items float32 matrices and the
    block workspace."""
    return matrices * n_items * n_items * 4 + 2 * BLOCK * n_items * 4


def check_memory(n_items: int, matrices: int = 1) -> None:
    """Refuse, before allocating, a catalogue whose matrices would not fit in the memory available now."""
    need, have = required_memory(n_items, matrices), available_memory()
    if need > have:
        raise CapacityError(
            f"EASE over {n_items:,} items needs about {need / 2**30:.1f} GiB ({'one' if matrices == 1 else matrices} "
            f"{n_items:,} x {n_items:,} "
            f"float32 matri{'x' if matrices == 1 else 'ces'}) but {have / 2**30:.1f} GiB is available: keep fewer items "
            "({min_item_interactions}), or use a model whose memory does not grow with the "
            "square of the catalogue (MultVAE, ALS)")


def gram_matrix(x: sp.csr_matrix, diagonal: float = 0.0) -> np.ndarray:
    """X^T X + diagonal * I as a dense Fortran-ordered float32 array, built a block of columns at a time
    (the sparse product of a whole dense catalogue can outgrow the dense matrix)."""
    n = x.shape[1]
    xt = x.T.tocsr().astype(np.float32)
    xc = x.tocsc().astype(np.float32)
    gram = np.empty((n, n), dtype=np.float32, order="F")
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        gram[:, start:stop] = (xt @ xc[:, start:stop]).toarray()
    gram[np.diag_indices(n)] += diagonal
    return gram


def gram_diagonal(x: sp.csr_matrix) -> np.ndarray:
    """The diagonal of X^T X: each item's sum of squared values (its count, for a binary log)."""
    return np.asarray(x.power(2).sum(axis=0), dtype=np.float64).ravel()


def _mirror_upper(matrix: np.ndarray) -> None:
    """Copy the upper triangle onto the lower one, in place, a block of rows at a time."""
    n = matrix.shape[0]
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        matrix[start:stop, :start] = matrix[:start, start:stop].T
        block = matrix[start:stop, start:stop]
        block[np.tril_indices(stop - start, -1)] = block.T[np.tril_indices(stop - start, -1)]


def _weights_from_precision(precision: np.ndarray) -> torch.Tensor:
    """B = -P / diag(P) with a zero diagonal, in place. ``precision`` is symmetric, so its transpose view
    is the same matrix in C order: B comes out C-contiguous, with no copy."""
    b = precision.T if precision.flags.f_contiguous else precision
    d = np.diag(b).copy()
    b /= -d[None, :]
    b[np.diag_indices(b.shape[0])] = 0.0
    return torch.from_numpy(b)


def precision_matrix(x: sp.csr_matrix, penalty) -> np.ndarray:
    """P = (X^T X + diagMat(penalty))^-1, symmetric, float32, factorised and inverted in place (LAPACK
    spotrf/spotri). ``penalty``: one number for every item (EASE's lambda) or one per item (DLAE's)."""
    check_memory(x.shape[1])
    return penalised_inverse(gram_matrix(x), penalty)


def penalised_inverse(gram: np.ndarray, penalty) -> np.ndarray:
    """(``gram`` + diagMat(``penalty``))^-1 of a Fortran-ordered float32 Gram matrix, computed in its place."""
    gram[np.diag_indices(gram.shape[0])] += np.asarray(penalty, dtype=np.float32)
    factor, info = scipy.linalg.lapack.spotrf(gram, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        raise ValueError(f"the Gram matrix plus its penalty is not positive definite (LAPACK spotrf info {info})")
    precision, info = scipy.linalg.lapack.spotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise ValueError(f"inverting the Gram matrix failed (LAPACK spotri info {info})")
    _mirror_upper(precision)
    return precision


def ease_weights(x: sp.csr_matrix, l2) -> torch.Tensor:
    """EASE's item-item weights, B = I - P diagMat(1 / diag(P)) with a zero diagonal; ``l2`` one number, or
    one per item (EDLAE's)."""
    return _weights_from_precision(precision_matrix(x, l2))


class EASE(Recommender):
    name = "EASE"
    config_class = EASEConfig
    no_latent_space = "it scores items from items (one items x items weight), with no code per user"
    search_space = {"l2": {"low": 1.0, "high": 1e5, "log": True}}

    def fit(self, user_items: sp.csr_matrix, validation=None, items: Vocabulary | None = None) -> EASE:
        """The closed form on ``user_items``; ``validation`` is not used (nothing to stop early)."""
        x = user_items = self._training_matrix(user_items)
        device = resolve_device(self.config.device)
        self._set_fitted(user_items, items, LearnedTensors(weights=ease_weights(x, self.config.l2).to(device)), device)
        return self

    def _item_scorer(self, user_items: sp.csr_matrix):
        histories = torch.from_numpy(user_items.toarray()).to(self.device_)  # users x items, like one score block
        weights = self.module_.weights
        return lambda items: histories @ weights[:, items]

    def similar_items(self, itemid: int, N: int = 10):
        """Items whose weight columns (how each is predicted from the others) are closest in cosine to
        ``itemid``'s, itself first."""
        self._check_fitted()
        return cosine_similar_items(self.module_.weights.T, itemid, N)

    def _new_module(self, n_items: int) -> LearnedTensors:
        return LearnedTensors(weights=torch.zeros(n_items, n_items))

