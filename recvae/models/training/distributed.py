"""Data-parallel training under ``torchrun``: the process group, each rank's share of the users, and the
few collectives the Trainer needs besides DistributedDataParallel's own gradient all-reduce."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from recvae.data.shard import UserRows
from recvae.errors import PeerLostError


@dataclass(frozen=True)
class World:
    """The processes training one model together; a world of one is plain single-process training."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 validates, checkpoints, saves and logs; the others train beside it."""
        return self.rank == 0

    def held_rows(self, train) -> tuple[sp.csr_matrix, np.ndarray | None]:
        """The training rows this rank trains on and their global row indices (None: all of them, in one
        process). A rank given the whole matrix takes every ``size``-th user from its rank; one given its
        own users' rows (:class:`UserRows`, read by each rank) takes those."""
        if isinstance(train, UserRows):
            return train.matrix, train.rows
        if self.size == 1:
            return train, None
        rows = np.arange(self.rank, train.shape[0], self.size)
        return train[rows], rows

    def total(self, values: dict[str, float]) -> dict[str, float]:
        """Sums of ``values`` over the ranks (every rank gets them)."""
        if self.size == 1 or not values:
            return values
        names = sorted(values)
        tensor = torch.tensor([values[n] for n in names], dtype=torch.float64)
        with self._peers():
            dist.all_reduce(tensor)
        return dict(zip(names, tensor.tolist()))

    def from_main(self, value):
        """Rank 0's ``value`` on every rank (validation scores, the decision to stop)."""
        if self.size == 1:
            return value
        box = [value]
        with self._peers():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        out = [None] * self.size
        with self._peers():
            dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            with self._peers():
                dist.barrier()

    @contextlib.contextmanager
    def _peers(self):
        """A collective another process left (killed, out of memory, failed before it) is a ``PeerLostError``,
        which the CLI reports in one line, wherever the run was: reading its share, training or describing."""
        try:
            yield
        except RuntimeError as exc:
            if not peer_lost(exc):
                raise
            raise self.peer_lost_error(exc) from None

    def peer_lost_error(self, exc: Exception, checkpoint_dir=None, where: str = "") -> PeerLostError:
        """The error a failed collective ``exc`` (or a ``PeerLostError`` said again) becomes; ``where``: what the
        run left to resume from, said after the cause."""
        cause = exc.cause if isinstance(exc, PeerLostError) else _first_sentence(str(exc))
        return PeerLostError(f"rank {self.rank}: another process of this {self.size}-process run stopped ({cause})"
                             f"{where}", self.size, checkpoint_dir and str(checkpoint_dir), cause)


def _first_sentence(text: str) -> str:
    """gloo's "[.../pair.cc:553] Connection closed by peer [10.0.0.2]:41234. This is typically caused by ..."
    as "Connection closed by peer [10.0.0.2]:41234"."""
    line = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", (text.strip().splitlines() or [""])[0])
    return line.split(". ")[0][:200]


def peer_lost(exc: RuntimeError) -> bool:
    """Whether a collective failed because another process went away (gloo's and NCCL's words for it)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(words in text for words in ("closed by peer", "connection reset by peer", "broken pipe"))


def sum_over_ranks(array: np.ndarray) -> np.ndarray:
    """``array``, a sum over this process's users, summed over every process's (torch's all-reduce), in place
    (through a copy where it is neither C- nor Fortran-contiguous); on CUDA tensors where the process group is
    NCCL's, which reduces no others."""
    flat = array.T if array.flags.f_contiguous else array  # a Gram matrix is Fortran-ordered: its transpose is C
    contiguous = np.ascontiguousarray(flat)  # ``flat`` itself where it is C-contiguous
    tensor = torch.from_numpy(contiguous)
    if dist.get_backend() == "nccl":
        on_device = tensor.to(local_device(torch.device("cuda")))
        dist.all_reduce(on_device)
        tensor.copy_(on_device.cpu())
    else:
        dist.all_reduce(tensor)
    if contiguous is not flat:
        flat[...] = contiguous
    return array


def local_rows(rows: np.ndarray, held_rows: np.ndarray) -> np.ndarray:
    """Of a global batch's user rows, those a rank holds (``held_rows``, increasing), as indices into them."""
    if not held_rows.size:
        return rows[:0]
    positions = np.minimum(np.searchsorted(held_rows, rows), held_rows.size - 1)
    return positions[held_rows[positions] == rows]


def launched_world() -> World:
    """The world ``torchrun`` started this process in (from its environment), without joining it."""
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def join_world(device: torch.device) -> World:
    """Join the torchrun world (gloo on CPU, nccl on CUDA), once per process; a world of one otherwise."""
    world = launched_world()
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if world.size > 1 and (dist.get_rank(), dist.get_world_size()) != (world.rank, world.size):
        raise RuntimeError(f"the process group ({dist.get_rank()} of {dist.get_world_size()}) is not the launched "
                           f"world ({world.rank} of {world.size})")
    return world


def local_device(device: torch.device) -> torch.device:
    """Under torchrun on GPUs, each rank on its own device (LOCAL_RANK)."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device
