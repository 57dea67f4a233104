"""The kernel seam (as Brian2's devices): the engine calls the per-step kernels only through a Backend.

A backend implements five functions on the argument groups of step.py (Neurons, PoissonDrive,
DriveWindow, Synapses, Recording) with the semantics documented there:

    advance(neurons, pois, win, syn, rec, ring, t0, n_slices, m, deliver_local, n_spk) -> (slices, n_spk)
    deliver(spk_step, spk_gid, a, b, ring, syn) -> events
    draw_ahead(neurons, pois, win, t0, x_out) -> None
    sort_keys(keys, slice_start, n_total) -> (steps, gids)
    apply_plastic(pp, conn, dt, steps, gids, local_steps, local_gids, lo, ring) -> events

`cpu` (numba, one thread per rank) is the one backend today; a GPU backend is added beside it in
BACKENDS and must give the same spikes (the tests compare rasters bitwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eilab.sim import plasticity, step


@dataclass(frozen=True)
class Backend:
    name: str
    advance: Callable[..., tuple[int, int]]
    deliver: Callable[..., int]
    draw_ahead: Callable[..., None]
    sort_keys: Callable[..., tuple]
    apply_plastic: Callable[..., int]


BACKENDS = {"cpu": Backend("cpu", step.advance, step.deliver, step.draw_slice_drive, step.sort_keys,
                           plasticity.apply_slice)}


def backend(name: str = "cpu") -> Backend:
    """The kernels of backend `name`."""
    return BACKENDS[name]
