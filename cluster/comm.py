"""The MPI communicator (mpi4py) behind eilab's `Comm` interface, with the one-process fallback.

`world()` gives an MPI communicator when the process was started by mpiexec/srun with more than
one rank, and `SingleProcess` otherwise, so `eilab run` needs no MPI at all by default.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from eilab.sim.exchange import Comm, Pending, SingleProcess


class MPIComm:
    """COMM_WORLD through mpi4py; spikes travel with Allgatherv (or Alltoallv) of int64 keys."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def start_allgather_keys(self, keys: np.ndarray) -> Pending:
        """Iallgather of the key counts now; the Allgatherv of the keys in `result()`."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        one, counts = np.array([keys.size], np.int64), np.empty(self.size, np.int64)
        request = self.comm.Iallgather(one, counts)

        def finish() -> np.ndarray:
            request.Wait()
            out = np.empty(int(counts.sum()), np.int64)
            self.comm.Allgatherv(keys, [out, counts, _offsets(counts), self._mpi.INT64_T])
            return out

        return Pending(request.Test, finish)

    def start_alltoall_keys(self, per_rank: list[np.ndarray]) -> Pending:
        """Ialltoall of the key counts now; the Alltoallv of the keys in `result()`."""
        send_counts = np.array([a.size for a in per_rank], np.int64)
        recv_counts = np.empty(self.size, np.int64)
        request = self.comm.Ialltoall(send_counts, recv_counts)
        send = np.ascontiguousarray(np.concatenate(per_rank), dtype=np.int64)

        def finish() -> np.ndarray:
            request.Wait()
            recv = np.empty(int(recv_counts.sum()), np.int64)
            int64 = self._mpi.INT64_T
            self.comm.Alltoallv([send, send_counts, _offsets(send_counts), int64],
                                [recv, recv_counts, _offsets(recv_counts), int64])
            return recv

        return Pending(request.Test, finish)

    def allgather(self, value: Any) -> list[Any]:
        return self.comm.allgather(value)

    def bcast(self, value: Any) -> Any:
        return self.comm.bcast(value, root=0)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        self.comm.Abort(code)


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Displacements of consecutive blocks of `counts` items (0, c0, c0 + c1, ...)."""
    out = np.zeros(counts.size, np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                      "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (mpiexec, mpirun, srun with PMI/PMIx) started this process."""
    return any(v in os.environ for v in LAUNCHER_VARIABLES)


def world() -> Comm:
    """MPI's world communicator when running on several ranks, else the one-process one.

    A process not started by an MPI launcher never imports mpi4py (no MPI_Init, no MPI memory).
    """
    if not launched_by_mpi():
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError:
        return SingleProcess()
    if MPI.COMM_WORLD.Get_size() == 1:
        return SingleProcess()
    return MPIComm(MPI.COMM_WORLD)
