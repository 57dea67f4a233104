"""How ranks talk: the communicator interface the engine uses, its one-process form, and the
spike exchange encoding.

`eilab.cluster.comm` provides the MPI implementation (mpi4py); the engine sees only this
interface. Every rank makes every collective call, also with nothing to send.

Spikes of one slice travel as int64 keys ``(step - slice_start) * n_total + gid``: sorting the
gathered keys (`step.sort_keys`) orders the slice's spikes by (step, gid), the order every
rank then delivers in, so sums into the ring buffer are bitwise the same for any rank count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass
class Pending:
    """A spike exchange in flight: `done()` tests, without blocking, whether the other ranks' counts
    are in; `result()` waits for them and returns the keys."""

    done: Callable[[], bool]
    result: Callable[[], np.ndarray]


class Comm(Protocol):
    rank: int
    size: int

    def start_allgather_keys(self, keys: np.ndarray) -> Pending:
        """Begin concatenating every rank's int64 keys (in rank order). Work done before
        `result()` fills the wait for the other ranks."""

    def start_alltoall_keys(self, per_rank: list[np.ndarray]) -> Pending:
        """Begin sending per_rank[r] to rank r; the result is what every rank sent here, in rank order."""

    def allgather(self, value: Any) -> list[Any]:
        """One small Python object from every rank."""

    def bcast(self, value: Any) -> Any:
        """Rank 0's object on every rank."""

    def barrier(self) -> None: ...


class SingleProcess:
    """The communicator of a run on one process: nothing to exchange."""

    rank = 0
    size = 1

    def start_allgather_keys(self, keys: np.ndarray) -> Pending:
        return Pending(lambda: True, lambda: keys)

    def start_alltoall_keys(self, per_rank: list[np.ndarray]) -> Pending:
        return Pending(lambda: True, lambda: per_rank[0])

    def allgather(self, value: Any) -> list[Any]:
        return [value]

    def bcast(self, value: Any) -> Any:
        return value

    def barrier(self) -> None:
        return None


def destinations(comm: Comm, has_targets: np.ndarray) -> np.ndarray:
    """(size, n_total) bool: which ranks hold targets of each gid (from each rank's has_targets)."""
    n = has_targets.size
    packed = comm.allgather(np.packbits(has_targets))
    return np.stack([np.unpackbits(p, count=n).astype(bool) for p in packed])


def encode(steps: np.ndarray, gids: np.ndarray, slice_start: int, n_total: int) -> np.ndarray:
    return (steps - slice_start) * n_total + gids
