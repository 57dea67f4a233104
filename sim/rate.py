"""Rate networks: tau_m dr/dt = -r + F(u), u = W r + X, stored in the same run format.

W comes from the same projections as a spiking network (each synapse adds its signed weight,
so a neuron's mean input is sum_b K_ab J_ab r_b); X from the drive: Poisson drives give their
mean, rate_hz * indegree * weight, currents their value (in the same input units) and I_e.
Rates are in Hz; `rates` (time_bin, neuron) holds r at the end of each bin; probes record r
(as `v`), the E and I parts of W r (`syn_e`, `syn_i`) and X (`ext`). Exponential Euler: over
a step, u is held and r relaxes exactly towards F(u).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit
from tqdm import tqdm

from eilab.sim import provenance
from eilab.sim.config import Config
from eilab.sim.drive import DriveTable
from eilab.sim.exchange import SingleProcess
from eilab.sim.models import initial_values
from eilab.sim.network import Connectivity, build_connectivity, population_offsets, probe_gids
from eilab.sim.store import RankWriter, create_store, mark_failed, prepare_run_dir


@njit(cache=True)
def recurrent_input(r, pre_gid0, pre_n, row0, stride, receptor, weight, rowptr, targets, u_e, u_i) -> None:
    """u_e, u_i = excitatory and inhibitory parts of W r (magnitudes), scattered along the CSR."""
    u_e[:] = 0.0
    u_i[:] = 0.0
    for q in range(pre_gid0.size):
        out = u_e if receptor[q] == 0 else u_i
        for k in range(pre_n[q]):
            x = r[pre_gid0[q] + k] * weight[q]
            if x == 0.0:
                continue
            row = row0[q] + k * stride[q]
            for s in range(rowptr[row], rowptr[row + 1]):
                out[targets[s]] += x


def transfer(u: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """F(u) in Hz for one population's parameters."""
    g, th = params["gain"], params["threshold"]
    if params["transfer"] == "linear":
        return g * u
    if params["transfer"] == "rectified":
        return g * np.maximum(u - th, 0.0)
    return params["r_max"] / (1.0 + np.exp(-(g * u - th)))


def _input_of(conn: Connectivity, r: np.ndarray, u_e: np.ndarray, u_i: np.ndarray) -> None:
    recurrent_input(r, conn.pre_gid0, conn.pre_n, conn.row0, conn.stride, conn.receptor, conn.weight, conn.rowptr,
                    conn.targets, u_e, u_i)


def run_rates(cfg: Config, raw: dict, run_dir: Path, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Integrate the rate network of `cfg` into a new run directory; returns the summary."""
    t_wall = time.perf_counter()
    n, dt = cfg.n_total, cfg.run.dt_ms
    drive = DriveTable(cfg)
    offs = population_offsets(cfg)
    conn = build_connectivity(cfg, 0, n)
    pops = [(offs[p.name], offs[p.name] + p.n, p) for p in cfg.populations]
    mu, w = drive.poisson()
    x_const = np.zeros(n)  # I_e
    x_poisson = np.zeros(len(pops))  # mean Poisson input while on
    decay = np.zeros(n)
    r = np.zeros(n)
    for k, (a, b, p) in enumerate(pops):
        x_const[a:b] = p.params["I_e"]
        x_poisson[k] = mu[k] / dt * 1000.0 * w[k]  # events/step -> Hz x weight
        decay[a:b] = np.exp(-dt / p.params["tau_m"])
        r[a:b] = initial_values(0.0 if p.v_init is None else p.v_init, cfg.run.seed, a, b - a, 0)
    probes = probe_gids(cfg)
    prepare_run_dir(run_dir, force)
    block = min(n, 4096)
    create_store(run_dir, cfg, provenance.run_attrs(cfg, raw, 1), probes, block, 1)
    writer = RankWriter(run_dir, cfg, SingleProcess(), 0, n, probes)
    t_total = cfg.steps(cfg.run.t_ms)
    bin_steps = cfg.steps(cfg.record.counts_bin_ms) if cfg.record.counts_bin_ms > 0 else 0
    every = cfg.steps(cfg.record.probe_every_ms or dt)
    u_e, u_i = np.zeros(n), np.zeros(n)
    late = np.zeros(len(pops))  # mean population rate over the second half of the run
    late_steps = 0
    t_sim = time.perf_counter()
    try:
        with tqdm(total=t_total, disable=not progress, desc=cfg.run.name, leave=False) as bar:
            for t in range(t_total):
                cur, _, on = drive.window(t, 1)
                _input_of(conn, r, u_e, u_i)
                x = x_const.copy()
                for k, (a, b, _p) in enumerate(pops):
                    x[a:b] += cur[k, 0] + x_poisson[k] * on[k, 0]
                u = u_e - u_i + x
                for a, b, p in pops:
                    target = transfer(u[a:b], p.params)
                    r[a:b] = target + (r[a:b] - target) * decay[a:b]
                if bin_steps and (t + 1) % bin_steps == 0:
                    writer.write_counts((t + 1) // bin_steps - 1, r[None, :].astype(np.float32))
                if probes.size and (t + 1) % every == 0:
                    sample = np.stack([r, u_e, -u_i, x])[:, probes].astype(np.float32)
                    writer.write_probes((t + 1) // every - 1, sample[None])
                if 2 * t >= t_total:
                    late += [r[a:b].mean() for a, b, _ in pops]
                    late_steps += 1
                bar.update()
    except BaseException as e:
        mark_failed(run_dir, f"{type(e).__name__}: {e}")
        raise
    late /= max(1, late_steps)
    summary = {
        "populations": {p.name: {"n": p.n, "spikes": 0, "rate_hz": float(late[k]),
                                 "final_rate_hz": float(r[a:b].mean())}
                        for k, (a, b, p) in enumerate(pops)},
        "spikes": 0,
        "mean_rate_hz": float(np.dot(late, [p.n for _, _, p in pops]) / n),
        "rate_definition": "population mean of r over the second half of the run",
        "synapses": conn.n_synapses,
        "synaptic_events": 0,
        "connectivity_bytes": conn.nbytes,
        "n_ranks": 1,
        "timings": {"build_s": t_sim - t_wall, "simulate_s": time.perf_counter() - t_sim,
                    "wall_s": time.perf_counter() - t_wall},
        "run_dir": str(run_dir),
    }
    writer.close("complete", summary=summary, finished=datetime.now(UTC).isoformat())
    return summary
