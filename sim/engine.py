"""Orchestration of a run: build this rank's part, loop over chunks of slices, record.

The numba kernels (models.py, step.py, network.py) do the work; this module owns the
arrays, the chunking of time (chunks are whole slices and whole count bins), flushing to the
store, timers and the progress bar.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eilab.sim import provenance
from eilab.sim.config import Config, InitValue, Normal
from eilab.sim.drive import DriveTable
from eilab.sim.models import MODEL_IDS, N_STATE, REF, SE, SI, V, default_v0, initial_extra_state, parameter_vector
from eilab.sim.network import Connectivity, build_connectivity, population_offsets
from eilab.sim.rng import PURPOSE_INIT, PURPOSE_POISSON, keys_for, poisson_table, uniforms_for
from eilab.sim.step import advance
from eilab.sim.store import RunWriter, prepare_run_dir

CHUNK_TARGET_STEPS = 2000
MIN_SPIKE_CAPACITY = 1 << 21


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
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_local(self) -> int:
        return self.hi - self.lo


def probe_gids(cfg: Config) -> np.ndarray:
    offs = population_offsets(cfg)
    gids = [offs[p.population] + k for p in cfg.record.probes for k in p.neurons]
    return np.unique(np.asarray(gids, dtype=np.int64))


def initial_values(value: InitValue, seed: int, gid0: int, n: int, counter: int) -> np.ndarray | float:
    """Initial values of gids gid0.. from the (seed, init, gid) streams at `counter` (and counter + 1)."""
    if isinstance(value, tuple):
        a, b = value
        return a + (b - a) * uniforms_for(seed, PURPOSE_INIT, gid0, n, counter)
    if isinstance(value, Normal):  # Box-Muller from two uniforms of the same stream
        u1 = uniforms_for(seed, PURPOSE_INIT, gid0, n, counter)
        u2 = uniforms_for(seed, PURPOSE_INIT, gid0, n, counter + 1)
        return value.mean + value.sd * np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    return value


def build_local(cfg: Config, lo: int, hi: int) -> LocalNetwork:
    """Neuron state, drive, connectivity and buffers for the gids [lo, hi)."""
    t_start = time.perf_counter()
    drive = DriveTable(cfg)
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
        pop_model[k] = MODEL_IDS[pop.model]
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
    pois_keys = keys_for(seed, PURPOSE_POISSON, lo, n_local)
    tables = [poisson_table(mu) for mu in pois_mu]
    pois_cdf = np.stack([c for c, _ in tables])
    pois_guide = np.stack([g for _, g in tables])
    conn = build_connectivity(cfg, lo, hi)
    delays = conn.delay_steps
    min_delay = int(delays.min()) if delays.size else max(1, cfg.steps(min(cfg.run.t_ms, 10.0)))
    ring = np.zeros((2, int(delays.max()) if delays.size else 1, n_local))
    pg = probe_gids(cfg)
    probe_slot = np.full(n_local, -1, np.int64)
    mine = pg[(pg >= lo) & (pg < hi)]
    probe_slot[mine - lo] = np.searchsorted(pg, mine)
    net = LocalNetwork(lo, hi, state, pop_model, pop_lo, pop_hi, pop_gid0, params, pois_mu, pois_w,
                       pois_keys, pois_cdf, pois_guide, conn, ring, min_delay, probe_slot, pg, drive)
    net.timings["build_s"] = time.perf_counter() - t_start
    return net


def _chunk_steps(m: int, bin_steps: int, probe_every: int) -> int:
    unit = math.lcm(m, bin_steps or 1, probe_every or 1)
    return unit * max(1, CHUNK_TARGET_STEPS // unit)


def _advance(net: LocalNetwork, cur, kick, win_t0, t, n_slices, m, spk_step, spk_gid, n_spk,
             counts, bin_steps, bin_t0, probe_every, probe_k0, probe_buf):
    c = net.conn
    return advance(net.state, net.pop_model, net.pop_lo, net.pop_hi, net.pop_gid0, net.params, net.pois_mu,
                   net.pois_w, net.pois_keys, net.pois_cdf, net.pois_guide, cur, kick, win_t0, net.ring, t,
                   n_slices, m, True,
                   c.pre_gid0, c.pre_n, c.row0, c.receptor, c.delay_steps, c.weight, c.rowptr, c.targets,
                   spk_step, spk_gid, n_spk, counts, bin_steps, bin_t0, net.probe_slot, probe_every,
                   probe_k0, probe_buf)


def simulate(cfg: Config, net: LocalNetwork, writer: RunWriter, progress: bool = True) -> dict[str, Any]:
    """Run the whole duration; returns spike totals per population and timers."""
    t_total = cfg.steps(cfg.run.t_ms)
    m = net.min_delay
    bin_steps = cfg.steps(cfg.record.counts_bin_ms) if cfg.record.counts_bin_ms > 0 else 0
    probe_every = cfg.steps(cfg.record.probe_every_ms or cfg.run.dt_ms) if net.probe_gids.size else 0
    chunk = _chunk_steps(m, bin_steps, probe_every)
    cap = max(MIN_SPIKE_CAPACITY, 2 * net.n_local * m)
    spk_step = np.empty(cap, np.int64)
    spk_gid = np.empty(cap, np.int32)
    cols = np.flatnonzero(net.probe_slot >= 0)
    probe_cols = net.probe_slot[cols]
    n_probe_local = net.probe_gids.size
    pop_spikes = np.zeros(len(cfg.populations), np.int64)
    pop_edges = np.append(net.pop_gid0, net.pop_gid0[-1] + (net.pop_hi[-1] - net.pop_lo[-1]))
    out_degree = net.conn.out_degree(cfg.n_total)
    record_s = 0.0
    events = 0

    def flush(n: int) -> None:
        nonlocal record_s, events
        events += int(out_degree[spk_gid[:n]].sum())
        t0 = time.perf_counter()
        if cfg.record.spikes:
            writer.append_spikes(spk_step[:n], spk_gid[:n])
        pop_spikes[:] += np.bincount(np.searchsorted(pop_edges, spk_gid[:n], side="right") - 1,
                                     minlength=pop_spikes.size)[: pop_spikes.size]
        record_s += time.perf_counter() - t0

    # compile (or load the cached kernels) before timing the loop
    t_jit = time.perf_counter()
    cur0, kick0 = net.drive.window(0, 1)
    _advance(net, cur0, kick0, 0, 0, 0, m, spk_step, spk_gid, 0, np.zeros((1, net.n_local), np.uint16),
             bin_steps, 0, probe_every, 0, np.zeros((1, 4, max(1, n_probe_local)), np.float32))
    jit_s = time.perf_counter() - t_jit

    bar = tqdm(total=round(cfg.run.t_ms), unit="ms", disable=not progress, desc=cfg.run.name, leave=False)
    t_sim = time.perf_counter()
    for t0 in range(0, t_total, chunk):
        n = min(chunk, t_total - t0)
        cur, kick = net.drive.window(t0, n)
        bin_t0 = t0 // bin_steps if bin_steps else 0
        n_bins = ((t0 + n - 1) // bin_steps - bin_t0 + 1) if bin_steps else 0
        counts = np.zeros((n_bins, net.n_local), np.uint16)
        if probe_every:
            k0 = -(-(t0 + 1) // probe_every) - 1
            n_k = (t0 + n) // probe_every - 1 - k0 + 1
        else:
            k0, n_k = 0, 0
        probe_buf = np.full((max(n_k, 0), 4, max(1, n_probe_local)), np.nan, np.float32)
        t, n_spk = t0, 0
        while t < t0 + n:
            m_eff = min(m, t0 + n - t)
            slices = (t0 + n - t) // m_eff
            done, n_spk = _advance(net, cur, kick, t0, t, slices, m_eff, spk_step, spk_gid, n_spk, counts,
                                   bin_steps, bin_t0, probe_every, k0, probe_buf)
            t += done * m_eff
            if done < slices:
                flush(n_spk)
                n_spk = 0
        flush(n_spk)
        t_rec = time.perf_counter()
        writer.write_counts(bin_t0, counts)
        if n_k > 0 and cols.size:
            writer.write_probes(k0, probe_buf[:, :, probe_cols], probe_cols)
        record_s += time.perf_counter() - t_rec
        bar.update(round((t0 + n) * cfg.run.dt_ms) - bar.n)
    bar.close()
    sim_s = time.perf_counter() - t_sim
    return {
        "pop_spikes": pop_spikes,
        "synaptic_events": events,
        "timings": {"jit_s": jit_s, "simulate_s": sim_s, "record_s": record_s},
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_attrs(cfg: Config, raw: dict, n_ranks: int) -> dict[str, Any]:
    offs = population_offsets(cfg)
    return {
        "config": cfg.model_dump(mode="json"),
        "config_given": raw,
        "seed": cfg.run.seed,
        "dt_ms": cfg.run.dt_ms,
        "t_ms": cfg.run.t_ms,
        "n_neurons": cfg.n_total,
        "populations": [{"name": p.name, "type": p.type, "n": p.n, "gid0": offs[p.name], "model": p.model}
                        for p in cfg.populations],
        "n_ranks": n_ranks,
        "versions": provenance.versions(),
        "git_commit": provenance.git_commit(),
        "host": provenance.host(),
        "started": datetime.now(UTC).isoformat(),
    }


def run(cfg: Config, raw: dict, run_dir: str | Path, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Simulate `cfg` into a new run directory and return the summary (also stored in attrs).

    Bad input raises before anything is written; a failure during the run leaves the run
    marked `failed` with the error.
    """
    run_dir = Path(run_dir)
    t_wall = time.perf_counter()
    net = build_local(cfg, 0, cfg.n_total)
    prepare_run_dir(run_dir, force)
    writer = RunWriter(run_dir, cfg, run_attrs(cfg, raw, 1), net.probe_gids)
    try:
        result = simulate(cfg, net, writer, progress)
    except BaseException as e:
        writer.close("failed", error=f"{type(e).__name__}: {e}")
        raise
    secs = cfg.run.t_ms / 1000.0
    pops = {}
    for k, p in enumerate(cfg.populations):
        pops[p.name] = {"n": p.n, "spikes": int(result["pop_spikes"][k]),
                        "rate_hz": float(result["pop_spikes"][k]) / p.n / secs}
    total = int(result["pop_spikes"].sum())
    summary = {
        "populations": pops,
        "spikes": total,
        "mean_rate_hz": total / cfg.n_total / secs,
        "synapses": net.conn.n_synapses,
        "synaptic_events": result["synaptic_events"],
        "connectivity_bytes": net.conn.nbytes,
        "timings": {"build_s": net.timings["build_s"], **result["timings"],
                    "wall_s": time.perf_counter() - t_wall},
        "peak_rss_mb": peak_rss_mb(),
        "run_dir": str(run_dir),
    }
    writer.close("complete", summary=summary, finished=datetime.now(UTC).isoformat())
    return summary
