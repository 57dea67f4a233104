"""Building one rank's part of a network: neuron state, drive tables, connectivity, delay ring,
probes and plastic projections for the gids [lo, hi) (NEST's "prepare", Arbor's recipe made real)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from eilab.sim.config import Config
from eilab.sim.drive import DriveTable
from eilab.sim.models import (
    N_STATE,
    REF,
    SE,
    SI,
    V,
    default_v0,
    initial_extra_state,
    initial_values,
    model_id,
    parameter_vector,
)
from eilab.sim.network import Connectivity, build_connectivity, population_offsets, probe_gids
from eilab.sim.plasticity import PlasticProjection, build_plastic
from eilab.sim.rng import PURPOSE_POISSON, keys_for, poisson_table


@dataclass
class LocalNetwork:
    """Everything one rank holds for gids [lo, hi)."""

    lo: int
    hi: int
    state: np.ndarray
    pop_model: np.ndarray
    pop_lo: np.ndarray
    pop_hi: np.ndarray
    pop_gid0: np.ndarray
    params: np.ndarray
    pois_mu: np.ndarray
    pois_w: np.ndarray
    pois_keys: np.ndarray
    pois_cdf: np.ndarray
    pois_guide: np.ndarray
    conn: Connectivity
    ring: np.ndarray
    min_delay: int
    probe_slot: np.ndarray
    probe_gids: np.ndarray
    drive: DriveTable
    plastic: list[PlasticProjection]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_local(self) -> int:
        return self.hi - self.lo


def build_local(cfg: Config, lo: int, hi: int, drive: DriveTable) -> LocalNetwork:
    """Neuron state, connectivity and buffers for the gids [lo, hi), with the run's drive table (made once
    per process: its files are read and its formulas checked before the run directory is claimed)."""
    t_start = time.perf_counter()
    offs = population_offsets(cfg)
    dt, seed = cfg.run.dt_ms, cfg.run.seed
    n_local = hi - lo
    n_pop = len(cfg.populations)
    state = np.zeros((N_STATE, n_local))
    pop_model = np.zeros(n_pop, np.int64)
    pop_lo = np.zeros(n_pop, np.int64)
    pop_hi = np.zeros(n_pop, np.int64)
    pop_gid0 = np.zeros(n_pop, np.int64)
    params = np.stack([parameter_vector(p, dt) for p in cfg.populations])
    for k, pop in enumerate(cfg.populations):
        g0, g1 = max(lo, offs[pop.name]), min(hi, offs[pop.name] + pop.n)
        g1 = max(g0, g1)
        pop_model[k] = model_id(pop)
        pop_lo[k], pop_hi[k], pop_gid0[k] = g0 - lo, g1 - lo, g0
        if g1 == g0:
            continue
        cols = slice(g0 - lo, g1 - lo)
        v_init = default_v0(pop) if pop.v_init is None else pop.v_init
        for k, (row, value) in enumerate(((V, v_init), (SE, pop.syn_init_ex), (SI, pop.syn_init_in))):
            state[row, cols] = initial_values(value, seed, g0, g1 - g0, 2 * k)
        for row, values in initial_extra_state(pop, state[V, cols]).items():
            state[row, cols] = values
    state[REF] = 0.0
    pois_mu, pois_w = drive.poisson()
    pois_keys = keys_for(seed if cfg.run.drive_seed is None else cfg.run.drive_seed, PURPOSE_POISSON, lo, n_local)
    tables = [poisson_table(mu) for mu in pois_mu]
    pois_cdf = np.stack([c for c, _ in tables])
    pois_guide = np.stack([g for _, g in tables])
    conn = build_connectivity(cfg, lo, hi)
    delays = conn.delay_steps
    min_delay = int(delays.min()) if delays.size else max(1, cfg.steps(min(cfg.run.t_ms, 10.0)))
    ring = np.zeros((2, cfg.max_delay_steps, n_local), cfg.run.ring_precision)  # the longest delay, drawn ones too
    pg = probe_gids(cfg)
    probe_slot = np.full(n_local, -1, np.int64)
    mine = pg[(pg >= lo) & (pg < hi)]
    probe_slot[mine - lo] = np.searchsorted(pg, mine)
    net = LocalNetwork(lo, hi, state, pop_model, pop_lo, pop_hi, pop_gid0, params, pois_mu, pois_w,
                       pois_keys, pois_cdf, pois_guide, conn, ring, min_delay, probe_slot, pg, drive,
                       build_plastic(cfg, conn, n_local))
    net.timings["build_s"] = time.perf_counter() - t_start
    return net


def load_kernels(cfg: Config, lo: int, drive: DriveTable) -> float:
    """Compile, or load from numba's cache, the build kernels (an empty build); returns seconds.

    Keeps this one-time process cost out of the network build time, as `jit_s` does for the loop.
    """
    t = time.perf_counter()
    build_local(cfg, lo, lo, drive)
    return time.perf_counter() - t
