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
from eilab.sim.config import Config, ConfigError
from eilab.sim.cycles import now as cycles_now
from eilab.sim.drive import DriveTable
from eilab.sim.exchange import Comm, SingleProcess, destinations, encode
from eilab.sim.models import (
    MODEL_IDS,
    N_STATE,
    REF,
    SE,
    SI,
    V,
    default_v0,
    initial_extra_state,
    initial_values,
    parameter_vector,
)
from eilab.sim.network import Connectivity, build_connectivity, population_offsets, probe_gids
from eilab.sim.plasticity import PlasticProjection, apply_slice, build_plastic
from eilab.sim.rate import run_rates
from eilab.sim.rng import PURPOSE_POISSON, keys_for, poisson_table
from eilab.sim.step import advance, deliver, draw_slice_drive, sort_keys
from eilab.sim.store import (
    RankWriter,
    RunExistsError,
    create_store,
    load_checkpoint,
    load_pending_spikes,
    load_plastic,
    mark_failed,
    open_run,
    prepare_run_dir,
    reopen_for_resume,
    snapshot_steps,
)

CHUNK_TARGET_STEPS = 10000
SPIKE_SLACK = 1 << 16


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
                       pois_keys, pois_cdf, pois_guide, conn, ring, min_delay, probe_slot, pg, drive,
                       build_plastic(cfg, conn, n_local))
    net.timings["build_s"] = time.perf_counter() - t_start
    return net


def load_kernels(cfg: Config, lo: int) -> float:
    """Compile, or load from numba's cache, the build kernels (an empty build); returns seconds.

    Keeps this one-time process cost out of the network build time, as `jit_s` does for the loop.
    """
    t = time.perf_counter()
    build_local(cfg, lo, lo)
    return time.perf_counter() - t


def _chunk_steps(m: int, bin_steps: int, probe_every: int, limits: list[int]) -> int:
    """Steps per window: whole slices, bins and probe intervals, at most every interval in `limits`
    (checkpoints), so each window end crosses at most one of each."""
    unit = math.lcm(m, bin_steps or 1, probe_every or 1)
    target = min([CHUNK_TARGET_STEPS, *(x for x in limits if x)])
    return unit * max(1, target // unit)


def _deliver_slice(net: LocalNetwork, dt: float, steps: np.ndarray, gids: np.ndarray, local_steps: np.ndarray,
                   local_gids: np.ndarray) -> int:
    """Deliver a slice's spikes (sorted by (step, gid)): static projections, then the plastic ones
    with their weight updates; returns the synaptic events."""
    c = net.conn
    events = deliver(steps, gids, 0, steps.size, net.ring, c.pre_gid0, c.pre_n, c.row0, c.stride, c.receptor,
                     c.delay_steps, c.weight, c.rowptr, c.targets, c.plastic)
    for pp in net.plastic:
        events += apply_slice(pp, c, dt, steps, gids, local_steps, local_gids, net.lo, net.ring)
    return events


def write_snapshots(writer: RankWriter, net: LocalNetwork, snapshots: dict[str, list[int]], step: int, dt: float,
                    after: int = -1) -> None:
    """Store the weights of each plastic projection whose snapshot step lies in (after, step]."""
    for pp in net.plastic:
        due = [k for k, s in enumerate(snapshots[pp.name]) if after < s <= step]
        if due:
            writer.write_weights([pp], due[-1], len(snapshots[pp.name]), step * dt)


def _draw_ahead(net: LocalNetwork, kick, on, win_t0, t, x_ahead) -> None:
    draw_slice_drive(net.pop_lo, net.pop_hi, net.pois_mu, net.pois_w, net.pois_keys, net.pois_cdf, net.pois_guide,
                     kick, on, win_t0, t, x_ahead)


def _advance(net: LocalNetwork, cur, kick, on, win_t0, x_ahead, t, n_slices, m, deliver_local, spk_step, spk_gid, n_spk,
             counts, bin_steps, bin_t0, probe_every, probe_k0, probe_buf, prof):
    c = net.conn
    return advance(net.state, net.pop_model, net.pop_lo, net.pop_hi, net.pop_gid0, net.params, net.pois_mu,
                   net.pois_w, net.pois_keys, net.pois_cdf, net.pois_guide, cur, kick, on, win_t0, x_ahead, net.ring, t,
                   n_slices, m, deliver_local,
                   c.pre_gid0, c.pre_n, c.row0, c.stride, c.receptor, c.delay_steps, c.weight, c.rowptr, c.targets,
                   c.plastic, spk_step, spk_gid, n_spk, counts, bin_steps, bin_t0, net.probe_slot, probe_every,
                   probe_k0, probe_buf, prof)


def simulate(cfg: Config, net: LocalNetwork, writer: RankWriter, comm: Comm, progress: bool = True,
             separate_phases: bool = False, start: int = 0, totals: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the whole duration on this rank; returns its spike totals per population and timers.

    One process delivers its own spikes inside the kernel, many slices per call. With several
    ranks (or `separate_phases`, to time each phase) every slice is followed by the exchange of
    the slice's spikes and their delivery, so the per-phase timers are separate. A resumed run
    starts at step `start` with the checkpoint's `totals` (spikes per population, events).
    """
    n_total = cfg.n_total
    t_total = cfg.steps(cfg.run.t_ms)
    m = net.min_delay
    bin_steps = cfg.steps(cfg.record.counts_bin_ms) if cfg.record.counts_bin_ms > 0 else 0
    probe_every = cfg.steps(cfg.record.probe_every_ms or cfg.run.dt_ms) if net.probe_gids.size else 0
    ck_steps = cfg.steps(cfg.run.checkpoint_every_ms) if cfg.run.checkpoint_every_ms > 0 else 0
    chunk = _chunk_steps(m, bin_steps, probe_every, [ck_steps])
    in_kernel = comm.size == 1 and not separate_phases and not net.plastic  # plasticity runs per slice
    snapshots = {pp.name: snapshot_steps(cfg, pp.rule.snapshot_every_ms) for pp in net.plastic}
    cap = net.n_local * m + SPIKE_SLACK  # a worst-case slice always fits; typical calls run many slices
    spk_step = np.empty(cap, np.int64)
    spk_gid = np.empty(cap, np.int32)
    n_probes = max(1, net.probe_gids.size)
    pop_starts = np.array(list(population_offsets(cfg).values()), np.int64)
    pop_spikes = np.array(totals["pop_spikes"], np.int64) if totals else np.zeros(pop_starts.size, np.int64)
    alltoall = cfg.run.exchange == "alltoall" and not in_kernel
    dest = destinations(comm, net.conn.out_degree(n_total) > 0) if alltoall else None
    timers = dict.fromkeys(("update_s", "exchange_s", "deliver_s", "record_s", "checkpoint_s", "drive_ahead_s"), 0.0)
    x_ahead = np.zeros((m, net.n_local))
    events = int(totals["synaptic_events"]) if totals else 0

    def take(n: int) -> None:
        """Move the first n buffered spikes to the writer and the totals."""
        t0 = time.perf_counter()
        if cfg.record.spikes:
            writer.add_spikes(spk_step[:n].copy(), spk_gid[:n].copy())
        pop_spikes[:] += np.bincount(np.searchsorted(pop_starts, spk_gid[:n], side="right") - 1,
                                     minlength=pop_spikes.size)
        timers["record_s"] += time.perf_counter() - t0

    # compile (or load the cached kernels) before timing the loop
    t_jit = time.perf_counter()
    cur, kick, on = net.drive.window(0, 1)
    _draw_ahead(net, kick, on, 0, 0, x_ahead[:1])
    _advance(net, cur, kick, on, 0, x_ahead[:0], 0, 0, m, in_kernel, spk_step, spk_gid, 0,
             np.zeros((1, net.n_local), np.uint16), bin_steps, 0, probe_every, 0,
             np.zeros((1, 4, n_probes), np.float32), np.zeros(5, np.int64))
    _deliver_slice(net, cfg.run.dt_ms, *sort_keys(np.zeros(0, np.int64), 0, n_total), spk_step[:0], spk_gid[:0])
    if start == 0:
        write_snapshots(writer, net, snapshots, 0, cfg.run.dt_ms)
    prof = np.zeros(5, np.int64)
    jit_s = time.perf_counter() - t_jit

    bar = tqdm(total=round(cfg.run.t_ms), initial=round(start * cfg.run.dt_ms), unit="ms",
               disable=not progress or comm.rank != 0, desc=cfg.run.name, leave=False)
    t_sim, tick0 = time.perf_counter(), cycles_now()
    for t0 in range(start, t_total, chunk):
        n = min(chunk, t_total - t0)
        cur, kick, on = net.drive.window(t0, n)
        bin_t0 = t0 // bin_steps if bin_steps else 0
        n_bins = ((t0 + n - 1) // bin_steps - bin_t0 + 1) if bin_steps else 0
        counts = np.zeros((n_bins, net.n_local), np.uint16)
        k0 = -(-(t0 + 1) // probe_every) - 1 if probe_every else 0
        n_k = (t0 + n) // probe_every - 1 - k0 + 1 if probe_every else 0
        probe_buf = np.full((max(n_k, 0), 4, n_probes), np.nan, np.float32)
        t, n_spk, n_ahead = t0, 0, 0
        while t < t0 + n:
            m_eff = min(m, t0 + n - t)
            slices = (t0 + n - t) // m_eff if in_kernel else 1
            first = n_spk
            ta = time.perf_counter()
            done, n_spk = _advance(net, cur, kick, on, t0, x_ahead[:n_ahead], t, slices, m_eff,
                                   in_kernel, spk_step, spk_gid, n_spk, counts, bin_steps, bin_t0, probe_every, k0,
                                   probe_buf, prof)
            timers["update_s"] += time.perf_counter() - ta
            if done == 0:  # buffer full: hand spikes over, then run the slice
                take(n_spk)
                n_spk = 0
                continue
            if not in_kernel:
                tb = time.perf_counter()
                keys = encode(spk_step[first:n_spk], spk_gid[first:n_spk], t, n_total)
                if dest is None:
                    pending = comm.start_allgather_keys(keys)
                else:
                    local = spk_gid[first:n_spk]
                    pending = comm.start_alltoall_keys([keys[dest[r, local]] for r in range(comm.size)])
                td = time.perf_counter()
                n_ahead = 0  # while the other ranks are still busy, draw the next slice's drive step by step
                while t + 2 * m <= t0 + n and n_ahead < m and not pending.done():
                    _draw_ahead(net, kick, on, t0, t + m + n_ahead, x_ahead[n_ahead : n_ahead + 1])
                    n_ahead += 1
                te = time.perf_counter()
                steps, gids = sort_keys(pending.result(), t, n_total)
                tc = time.perf_counter()
                events += _deliver_slice(net, cfg.run.dt_ms, steps, gids, spk_step[first:n_spk], spk_gid[first:n_spk])
                timers["exchange_s"] += (td - tb) + (tc - te)
                timers["drive_ahead_s"] += te - td
                timers["deliver_s"] += time.perf_counter() - tc
            t += done * m_eff
            if not in_kernel:  # weights as they are after the slice that holds the snapshot's step
                write_snapshots(writer, net, snapshots, t, cfg.run.dt_ms, after=t - m_eff)
            if done < slices:
                take(n_spk)
                n_spk = 0
        take(n_spk)
        t_rec = time.perf_counter()
        writer.write_counts(bin_t0, counts)
        if n_k > 0:
            writer.write_probes(k0, probe_buf[:, :, writer.probe_cols or slice(0, 0)])
        writer.flush_spikes()
        timers["record_s"] += time.perf_counter() - t_rec
        if ck_steps and (t0 + n) // ck_steps > t0 // ck_steps and t0 + n < t_total:
            t_ck = time.perf_counter()
            writer.checkpoint(t0 + n, net.state, net.ring,
                              {"pop_spikes": pop_spikes.tolist(), "synaptic_events": events + int(prof[4])},
                              net.plastic)
            timers["checkpoint_s"] += time.perf_counter() - t_ck
        bar.update(round((t0 + n) * cfg.run.dt_ms) - bar.n)
    bar.close()
    timers["simulate_s"] = time.perf_counter() - t_sim
    per_tick = timers["simulate_s"] / max(1, cycles_now() - tick0)
    events += int(prof[4])
    for key, ticks in zip(("drive_s", "neuron_s", "bookkeeping_s", "deliver_local_s"), prof[:4], strict=True):
        timers[key] = float(ticks) * per_tick
    timers["deliver_s"] += timers.pop("deliver_local_s")
    timers["drive_s"] += timers["drive_ahead_s"]
    timers["update_s"] += timers["drive_ahead_s"]  # kept apart too: the exchange wait it filled
    timers["neuron_steps"] = float(net.n_local) * (t_total - start)
    return {"pop_spikes": pop_spikes, "synaptic_events": events, "timings": {"jit_s": jit_s, **timers}}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(cfg: Config, raw: dict, run_dir: str | Path, force: bool = False, progress: bool = True,
        comm: Comm | None = None, bounds: np.ndarray | None = None, block: int | None = None,
        separate_phases: bool = False) -> dict[str, Any]:
    """Simulate `cfg` into a new run directory and return the summary (also stored in attrs).

    On several ranks every rank calls this with its communicator, the rank boundaries (whole
    blocks of `block` gids) and the same arguments. Bad input raises on every rank before
    anything is written; a failure during the run leaves the run marked `failed`.
    """
    comm = comm or SingleProcess()
    run_dir = Path(run_dir)
    if cfg.is_rate_network:
        if comm.size > 1:
            raise ConfigError("rate networks run on one process; start without mpiexec")
        return run_rates(cfg, raw, run_dir, force, progress)
    n = cfg.n_total
    bounds = np.array([0, n]) if bounds is None else bounds
    block = block or min(n, 4096)
    lo, hi = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    t_wall = time.perf_counter()
    load_s = load_kernels(cfg, lo)
    net = build_local(cfg, lo, hi)
    net.timings["load_kernels_s"] = load_s
    error = None
    if comm.rank == 0:
        try:
            prepare_run_dir(run_dir, force)
            create_store(run_dir, cfg, provenance.run_attrs(cfg, raw, comm.size), net.probe_gids, block, N_STATE)
        except RunExistsError as e:
            error = str(e)
    error = comm.bcast(error)
    if error:
        raise RunExistsError(error)
    writer = RankWriter(run_dir, cfg, comm, lo, hi, net.probe_gids)
    return _simulate_and_close(cfg, net, writer, comm, run_dir, t_wall, progress, separate_phases, 0, None)


def resume(run_dir: str | Path, progress: bool = True, comm: Comm | None = None,
           bounds: np.ndarray | None = None) -> dict[str, Any]:
    """Continue a killed or failed run from its last checkpoint, on any number of ranks.

    The final raster is bitwise the one an uninterrupted run gives: the state and the delay
    buffer are stored per gid, and every random draw is a function of (seed, gid, step).
    """
    comm = comm or SingleProcess()
    run_dir = Path(run_dir)
    run_info = open_run(run_dir, allow_incomplete=True)
    if run_info.status == "complete":
        raise RunExistsError(f"{run_dir} is complete already; nothing to resume")
    cfg = run_info.config
    bounds = np.array([0, cfg.n_total]) if bounds is None else bounds
    lo, hi = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    t_wall = time.perf_counter()
    net = build_local(cfg, lo, hi)
    info, state, ring = load_checkpoint(run_dir, lo, hi)
    net.state[:] = state
    net.ring[:] = ring
    load_plastic(run_dir, info["slot"], net.plastic, lo, hi)
    comm.barrier()
    if comm.rank == 0:
        reopen_for_resume(run_dir, comm.size)
    comm.barrier()
    segment = len(open_run(run_dir, allow_incomplete=True).attrs["resumed"])
    step = int(info["step"])
    bin_steps = cfg.steps(cfg.record.counts_bin_ms) if cfg.record.counts_bin_ms > 0 else 1
    every = cfg.steps(cfg.record.probe_every_ms or cfg.run.dt_ms)
    writer = RankWriter(run_dir, cfg, comm, lo, hi, net.probe_gids, stored=int(info["spikes_stored"]),
                        first_bin=step // bin_steps, first_sample=-(-(step + 1) // every) - 1, segment=segment)
    if comm.rank == 0:  # spikes of before the checkpoint that were still queued: rank 0 writes them now
        times, gids = load_pending_spikes(run_dir, info["slot"])
        if times.size:
            writer.pending.append((times, gids))
            writer.n_pending += times.size
    totals = {k: info[k] for k in ("pop_spikes", "synaptic_events")} if comm.rank == 0 else None
    return _simulate_and_close(cfg, net, writer, comm, run_dir, t_wall, progress, False, step, totals)


def _simulate_and_close(cfg: Config, net: LocalNetwork, writer: RankWriter, comm: Comm, run_dir: Path,
                        t_wall: float, progress: bool, separate_phases: bool, start: int,
                        totals: dict[str, Any] | None) -> dict[str, Any]:
    try:
        result = simulate(cfg, net, writer, comm, progress, separate_phases, start, totals)
    except BaseException as e:
        mark_failed(run_dir, f"rank {comm.rank}: {type(e).__name__}: {e}")
        raise
    n = cfg.n_total
    gathered = comm.allgather((result["pop_spikes"].tolist(), result["synaptic_events"], net.conn.n_synapses,
                               net.conn.nbytes, peak_rss_mb(), result["timings"], net.timings["build_s"],
                               net.timings.get("load_kernels_s", 0.0)))
    pop_spikes = np.sum([np.array(t[0]) for t in gathered], axis=0)
    secs = cfg.run.t_ms / 1000.0
    pops = {p.name: {"n": p.n, "spikes": int(pop_spikes[k]), "rate_hz": float(pop_spikes[k]) / p.n / secs}
            for k, p in enumerate(cfg.populations)}
    total = int(pop_spikes.sum())
    timings = {key: max(t[5][key] for t in gathered) for key in result["timings"]}
    timings["jit_s"] += max(t[7] for t in gathered)
    summary = {
        "populations": pops,
        "spikes": total,
        "mean_rate_hz": total / n / secs,
        "synapses": sum(t[2] for t in gathered),
        "synaptic_events": sum(t[1] for t in gathered),
        "connectivity_bytes": sum(t[3] for t in gathered),
        "n_ranks": comm.size,
        "timings": {"build_s": max(t[6] for t in gathered), **timings, "wall_s": time.perf_counter() - t_wall},
        "timings_per_rank": [t[5] for t in gathered],
        "peak_rss_mb": max(t[4] for t in gathered),
        "peak_rss_mb_per_rank": [t[4] for t in gathered],
        "run_dir": str(run_dir),
    }
    writer.close("complete", summary=summary, finished=datetime.now(UTC).isoformat())
    return summary
