"""Orchestration of a run: `Simulation` (prepare, advance_to, close) and the thin `run` and `resume`.

A step of the engine, phase by phase (as NEST splits update, collocate, exchange and deliver):

    Simulation.advance_to(t_ms)      windows of whole slices, bins and probe intervals
      _window
        drive      DriveTable.window         currents, input spikes, Poisson on/off for the window
        update     _update -> step.advance   neuron updates, Poisson kicks, local delivery (1 rank)
        exchange   _exchange                 this slice's spikes to the other ranks (non-blocking)
                   _draw_ahead               the next slice's drive drawn while waiting
        deliver    _deliver -> step.deliver  every rank's spikes into this rank's delay ring
        plasticity plasticity.apply_slice    weight updates of plastic projections (in _deliver)
        record     _take, _record            spikes, counts, probes, weight snapshots to the store;
                                             `on_counts(bin0, counts)` sees this rank's counts of the window
      _end_of_window
        checkpoint RankWriter.checkpoint     when due, or on SIGTERM/Ctrl-C (then Interrupted)
        report     `report(Progress)`        time, spikes so far and rates, for progress bars,
                                             Optuna pruning and ML in the loop

The numba kernels (models.py, step.py, network.py) do the work; build.py builds a rank's part;
this module owns the loop state, the timers and the progress bar.
"""

from __future__ import annotations

import math
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eilab.sim import provenance
from eilab.sim.backend import backend
from eilab.sim.build import LocalNetwork, build_local, load_kernels
from eilab.sim.config import Config, ConfigError
from eilab.sim.cycles import now as cycles_now
from eilab.sim.drive import DriveTable
from eilab.sim.exchange import Comm, Pending, SingleProcess, destinations, encode
from eilab.sim.grid import TimeGrid, window_steps
from eilab.sim.interrupt import Interrupted, StopRequests
from eilab.sim.models import N_STATE
from eilab.sim.network import population_offsets, probe_gids
from eilab.sim.partition import block_size, bounds
from eilab.sim.rate import RateSimulation
from eilab.sim.reader import open_run
from eilab.sim.rundir import RunDirError, RunExistsError, RunLock, claim, lock_existing
from eilab.sim.step import DriveWindow, Neurons, PoissonDrive, Recording
from eilab.sim.store import (
    CheckpointError,
    RankWriter,
    checkpoint_info,
    close_on_error,
    create_store,
    fault_point,
    load_checkpoint,
    load_pending_spikes,
    load_plastic,
    mark_failed,
    reopen_for_resume,
    verify_checkpoint,
)
from eilab.sim.summary import Progress, RunSummary

SPIKE_SLACK = 1 << 16
TIMERS = ("update_s", "exchange_s", "deliver_s", "record_s", "checkpoint_s", "drive_ahead_s")


@dataclass
class _Window:
    """The recording buffers of one window [t0, t0 + n)."""

    t0: int
    n: int
    bin0: int
    counts: np.ndarray   # (bins, neurons) uint16
    drive: np.ndarray    # (bins, neurons) uint32 Poisson drive events; (0, neurons) unless recorded
    k0: int              # first probe sample
    probes: np.ndarray   # (samples, 4, probes) float32


CountsHook = Callable[[int, np.ndarray], None]
"""`on_counts(bin0, counts)`: spike counts (time_bin, neuron) of bins bin0.. of this rank's neurons."""


class Simulation:
    """One run on this rank: prepared by `create` (new run) or `resume`, then `advance_to(t_ms)` any
    number of times, then `close()`. Use it as a context manager: a signal, an error or a full disk
    then closes the run as interrupted or failed and releases the run directory. Every rank of an
    MPI job makes the same calls."""

    def __init__(self, cfg: Config, net: LocalNetwork, writer: RankWriter, comm: Comm, run_dir: Path,
                 lock: RunLock | None, start: int = 0, totals: dict[str, Any] | None = None, progress: bool = True,
                 separate_phases: bool = False, report: Callable[[Progress], None] | None = None,
                 t_wall: float | None = None, on_counts: CountsHook | None = None) -> None:
        self.cfg, self.net, self.writer, self.comm, self.run_dir, self.lock = cfg, net, writer, comm, run_dir, lock
        self.grid = TimeGrid.of(cfg)
        self.report, self.on_counts = report, on_counts
        self.t_wall = t_wall if t_wall is not None else time.perf_counter()
        self.start = self.step = start
        self.m = m = net.min_delay
        self.probe_every = self.grid.probe_every if net.probe_gids.size else 0
        self.window = window_steps(m, self.grid.bin, self.probe_every, self.grid.checkpoint)
        self.in_kernel = comm.size == 1 and not separate_phases and not net.plastic  # plasticity runs per slice
        self.snapshots = {pp.name: self.grid.snapshots(pp.rule.snapshot_every_ms) for pp in net.plastic}
        cap = net.n_local * m + SPIKE_SLACK  # a worst-case slice always fits; typical calls run many slices
        self.spk_step = np.empty(cap, np.int64)
        self.spk_gid = np.empty(cap, np.int32)
        self.spk_off = np.empty(cap)
        self.n_probes = max(1, net.probe_gids.size)
        self.pop_starts = np.array(list(population_offsets(cfg).values()), np.int64)
        self.pop_spikes = (np.array(totals["pop_spikes"], np.int64) if totals
                           else np.zeros(self.pop_starts.size, np.int64))
        self.events = int(totals["synaptic_events"]) if totals else 0
        alltoall = cfg.run.exchange == "alltoall" and not self.in_kernel
        self.dest = destinations(comm, net.conn.out_degree(cfg.n_total) > 0) if alltoall else None
        self.timers = dict.fromkeys(TIMERS, 0.0)
        self.x_ahead = np.zeros((m, net.n_local))
        self.prof = np.zeros(5, np.int64)
        self.sim_s, self.sim_cpu_s, self.ticks = 0.0, 0.0, 0
        self.stop = StopRequests()
        self.kernels = backend("cpu")
        self.neurons = Neurons(net.state, net.pop_model, net.pop_lo, net.pop_hi, net.pop_gid0, net.params)
        self.pois = PoissonDrive(net.pois_mu, net.pois_w, net.pois_keys, net.pois_cdf, net.pois_guide)
        self.syn = net.conn.kernel_args()
        self.jit_s = self._load_loop_kernels()
        self.bar = tqdm(total=round(cfg.run.t_ms), initial=round(start * cfg.run.dt_ms), unit="ms",
                        disable=not progress or comm.rank != 0, desc=cfg.run.name, leave=False)

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, cfg: Config, raw: dict, run_dir: str | Path, *, force: bool = False, keep_others: bool = False,
               comm: Comm | None = None, progress: bool = True, separate_phases: bool = False,
               report: Callable[[Progress], None] | None = None, on_counts: CountsHook | None = None) -> Simulation:
        """Prepare a new run: claim and lock the run directory and lay out the store (rank 0; an unusable
        directory raises on every rank before anything is built), then build this rank's part. `report` is
        called after every window with the progress, `on_counts(bin0, counts)` with the window's spike counts
        (bins bin0.., this rank's neurons) as they go to the store."""
        comm = comm or SingleProcess()
        run_dir = Path(run_dir)
        n = cfg.n_total
        block = block_size(n)
        edges = bounds(n, comm.size, block)
        lo, hi = int(edges[comm.rank]), int(edges[comm.rank + 1])
        t_wall = time.perf_counter()
        drive = DriveTable(cfg)  # bad drive files and formulas are refused before the directory is claimed
        lock = _on_rank0(comm, lambda: _new_store(cfg, raw, run_dir, force, keep_others, edges, block,
                                                  drive.samples))
        try:
            load_s = load_kernels(cfg, lo, drive)
            net = build_local(cfg, lo, hi, drive)
            net.timings["load_kernels_s"] = load_s
            writer = RankWriter(run_dir, cfg, comm, lo, hi, net.probe_gids)
            return cls(cfg, net, writer, comm, run_dir, lock, progress=progress, separate_phases=separate_phases,
                       report=report, t_wall=t_wall, on_counts=on_counts)
        except BaseException as e:
            mark_failed(run_dir, f"rank {comm.rank}: preparing the run: {type(e).__name__}: {e}")
            if lock:
                lock.release()
            raise

    @classmethod
    def resume(cls, run_dir: str | Path, *, comm: Comm | None = None, progress: bool = True,
               report: Callable[[Progress], None] | None = None, on_counts: CountsHook | None = None) -> Simulation:
        """Prepare the continuation of a killed, failed or interrupted run from its last checkpoint, on any
        number of ranks (hooks as in `create`; `on_counts` sees the bins from the checkpoint on). The checkpoint
        is verified first (every rank's part present, written at the same step into the same slot, checksums as
        written); a partial or damaged one raises CheckpointError."""
        comm = comm or SingleProcess()
        run_dir = Path(run_dir)
        open_run(run_dir, allow_incomplete=True)
        lock = _on_rank0(comm, lambda: lock_existing(run_dir))
        try:
            return cls._resume_locked(run_dir, comm, lock, progress, report, on_counts)
        except BaseException:
            if lock:
                lock.release()
            raise

    @classmethod
    def _resume_locked(cls, run_dir: Path, comm: Comm, lock: RunLock | None, progress: bool,
                       report: Callable[[Progress], None] | None, on_counts: CountsHook | None) -> Simulation:
        stored = open_run(run_dir, allow_incomplete=True)
        if stored.status == "complete":
            raise RunExistsError(f"{run_dir} is complete already; nothing to resume")
        cfg = stored.config
        info = checkpoint_info(run_dir)
        problems = [p for part in comm.allgather(verify_checkpoint(run_dir, info, comm.rank, comm.size)) for p in part]
        if problems:
            raise CheckpointError(f"{run_dir}: the last checkpoint (slot {info['slot']}, step {info['step']}) is not "
                                  f"whole: {'; '.join(problems[:3])}; it cannot be resumed")
        edges = bounds(cfg.n_total, comm.size, int(stored.attrs["partition_block"]))
        lo, hi = int(edges[comm.rank]), int(edges[comm.rank + 1])
        t_wall = time.perf_counter()
        net = build_local(cfg, lo, hi, DriveTable(cfg, stored.drive_samples()))
        net.state[:], net.ring[:] = load_checkpoint(run_dir, info["slot"], lo, hi)
        load_plastic(run_dir, info["slot"], net.plastic, lo, hi)
        comm.barrier()
        if comm.rank == 0:
            reopen_for_resume(run_dir, comm.size, edges.tolist())
        comm.barrier()
        segment = len(open_run(run_dir, allow_incomplete=True).attrs["resumed"])
        step = int(info["step"])
        grid = TimeGrid.of(cfg)
        writer = RankWriter(run_dir, cfg, comm, lo, hi, net.probe_gids, stored=int(info["spikes_stored"]),
                            first_bin=grid.first_bin(step), first_sample=grid.first_sample(step), segment=segment)
        if comm.rank == 0:  # spikes of before the checkpoint that were still queued: rank 0 writes them now
            times, gids = load_pending_spikes(run_dir, info["slot"])
            if times.size:
                writer.pending.append((times, gids))
                writer.n_pending += times.size
        totals = {k: info[k] for k in ("pop_spikes", "synaptic_events")} if comm.rank == 0 else None
        return cls(cfg, net, writer, comm, run_dir, lock, start=step, totals=totals, progress=progress,
                   report=report, t_wall=t_wall, on_counts=on_counts)

    def __enter__(self) -> Simulation:
        self.stop.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self.stop.__exit__()
        try:
            close_on_error(self.writer, self.run_dir, self.comm.rank, error)
        finally:
            self.bar.close()
            if self.lock:
                self.lock.release()

    @property
    def t_ms(self) -> float:
        """Simulated time reached, ms."""
        return self.step * self.grid.dt_ms

    def advance_to(self, t_ms: float) -> float:
        """Simulate up to t_ms (at most the run's end), stopping at the first window edge at or after it
        (windows are whole slices, count bins and probe intervals); returns the time reached. Any split
        of a run into advance_to calls gives bitwise the same store as one call."""
        unit = math.lcm(self.m, self.grid.bin or 1, self.probe_every or 1)
        target = min(self.grid.total, -(-round(t_ms / self.grid.dt_ms - 1e-9) // unit) * unit)
        t_sim, cpu0, tick0 = time.perf_counter(), time.process_time(), cycles_now()
        while self.step < target:
            n = min(self.window, target - self.step)
            self._window(self.step, n)
            self.step += n
            self._end_of_window(self.step - n)
        self.sim_s += time.perf_counter() - t_sim
        self.sim_cpu_s += time.process_time() - cpu0
        self.ticks += cycles_now() - tick0
        return self.t_ms

    def close(self) -> RunSummary:
        """Collective, after the last advance_to: the summary, stored with status `complete`."""
        if self.step < self.grid.total:
            raise RuntimeError(f"close() at t = {self.t_ms} ms: the run ends at {self.cfg.run.t_ms} ms; "
                               "advance_to(its end) first")
        summary = _summary(self.cfg, self.net, self.comm, self._rank_totals(), self.run_dir, self.t_wall)
        self.writer.close("complete", summary=summary.as_dict(), finished=datetime.now(UTC).isoformat())
        return summary

    # ------------------------------------------------------------ one window
    def _window(self, t0: int, n: int) -> None:
        """Simulate the steps [t0, t0 + n): drive, then slices of update, exchange and deliver, then record."""
        cur, kick, on = self.net.drive.window(t0, n)
        rec = self._buffers(t0, n)
        t, n_spk, n_ahead = t0, 0, 0
        while t < t0 + n:
            m_eff = min(self.m, t0 + n - t)
            slices = (t0 + n - t) // m_eff if self.in_kernel else 1
            first = n_spk
            done, n_spk = self._update(cur, kick, on, rec, t, slices, m_eff, n_ahead, n_spk)
            if done == 0:  # buffer full: hand spikes over, then run the slice
                self._take(n_spk)
                n_spk = 0
                continue
            if not self.in_kernel:
                pending = self._exchange(t, first, n_spk)
                n_ahead = self._draw_ahead(pending, DriveWindow(cur, kick, on, t0, self.x_ahead[:0]), n, t)
                self._deliver(pending, t, first, n_spk)
            t += done * m_eff
            if not self.in_kernel:  # weights as they are after the slice that holds the snapshot's step
                self._snapshots(t, after=t - m_eff)
            if done < slices:
                self._take(n_spk)
                n_spk = 0
        self._take(n_spk)
        self._record(rec)

    def _buffers(self, t0: int, n: int) -> _Window:
        b, pe = self.grid.bin, self.probe_every
        bin0 = t0 // b if b else 0
        n_bins = ((t0 + n - 1) // b - bin0 + 1) if b else 0
        k0 = -(-(t0 + 1) // pe) - 1 if pe else 0
        n_k = (t0 + n) // pe - 1 - k0 + 1 if pe else 0
        drive_bins = n_bins if self.cfg.record.drive_counts else 0
        return _Window(t0, n, bin0, np.zeros((n_bins, self.net.n_local), np.uint16),
                       np.zeros((drive_bins, self.net.n_local), np.uint32), k0,
                       np.full((max(n_k, 0), 4, self.n_probes), np.nan, np.float32))

    def _update(self, cur: np.ndarray, kick: np.ndarray, on: np.ndarray, rec: _Window, t: int, slices: int, m: int,
                n_ahead: int, n_spk: int) -> tuple[int, int]:
        """Neuron updates of `slices` slices of m steps from step t (kernel step.advance); returns the slices
        done and the spikes now buffered."""
        ta = time.perf_counter()
        done, n_spk = self.kernels.advance(
            self.neurons, self.pois, DriveWindow(cur, kick, on, rec.t0, self.x_ahead[:n_ahead]), self.syn,
            Recording(self.spk_step, self.spk_gid, self.spk_off, rec.counts, rec.drive, self.grid.bin, rec.bin0,
                      self.net.probe_slot, self.probe_every, rec.k0, rec.probes, self.prof),
            self.net.ring, t, slices, m, self.in_kernel, n_spk)
        self.timers["update_s"] += time.perf_counter() - ta
        return done, n_spk

    def _exchange(self, t: int, first: int, n_spk: int) -> Pending:
        """Start sending this slice's spikes to every rank (allgather) or to the ranks holding their targets."""
        tb = time.perf_counter()
        keys = encode(self.spk_step[first:n_spk], self.spk_gid[first:n_spk], t, self.cfg.n_total)
        if self.dest is None:
            pending = self.comm.start_allgather_keys(keys)
        else:
            local = self.spk_gid[first:n_spk]
            pending = self.comm.start_alltoall_keys([keys[self.dest[r, local]] for r in range(self.comm.size)])
        self.timers["exchange_s"] += time.perf_counter() - tb
        return pending

    def _draw_ahead(self, pending: Pending, win: DriveWindow, n: int, t: int) -> int:
        """While the other ranks' spikes are still out, draw the next slice's drive step by step; returns the
        steps drawn (used by the next _update)."""
        td = time.perf_counter()
        m, t0, n_ahead = self.m, win.t0, 0
        while t + 2 * m <= t0 + n and n_ahead < m and not pending.done():
            self.kernels.draw_ahead(self.neurons, self.pois, win, t + m + n_ahead, self.x_ahead[n_ahead : n_ahead + 1])
            n_ahead += 1
        self.timers["drive_ahead_s"] += time.perf_counter() - td
        return n_ahead

    def _deliver(self, pending: Pending, t: int, first: int, n_spk: int) -> None:
        """Every rank's spikes of the slice, sorted by (step, gid), into this rank's delay ring: static
        projections, then the plastic ones with their weight updates."""
        te = time.perf_counter()
        steps, gids = self.kernels.sort_keys(pending.result(), t, self.cfg.n_total)
        tc = time.perf_counter()
        self.events += self.kernels.deliver(steps, gids, 0, steps.size, self.net.ring, self.syn)
        for pp in self.net.plastic:
            self.events += self.kernels.apply_plastic(pp, self.net.conn, self.cfg.run.dt_ms, steps, gids,
                                                      self.spk_step[first:n_spk], self.spk_gid[first:n_spk],
                                                      self.net.lo, self.net.ring)
        self.timers["exchange_s"] += tc - te
        self.timers["deliver_s"] += time.perf_counter() - tc

    def _take(self, n: int) -> None:
        """Move the first n buffered spikes to the writer and the totals."""
        t0 = time.perf_counter()
        if self.cfg.record.spikes:
            self.writer.add_spikes(self.spk_step[:n].copy(), self.spk_gid[:n].copy(), self.spk_off[:n])
        self.pop_spikes[:] += np.bincount(np.searchsorted(self.pop_starts, self.spk_gid[:n], side="right") - 1,
                                          minlength=self.pop_spikes.size)
        self.timers["record_s"] += time.perf_counter() - t0

    def _record(self, rec: _Window) -> None:
        """The window's counts and probe samples, and every whole chunk of spikes (collective)."""
        t_rec = time.perf_counter()
        self.writer.write_counts(rec.bin0, rec.counts, rec.drive)
        if self.on_counts and rec.counts.shape[0]:
            self.on_counts(rec.bin0, rec.counts)
        if rec.probes.shape[0] > 0:
            self.writer.write_probes(rec.k0, rec.probes[:, :, self.writer.probe_cols or slice(0, 0)])
        self.writer.flush_spikes()
        self.timers["record_s"] += time.perf_counter() - t_rec

    def _snapshots(self, step: int, after: int = -1) -> None:
        """Store the weights of each plastic projection whose snapshot step lies in (after, step]."""
        for pp in self.net.plastic:
            due = [k for k, s in enumerate(self.snapshots[pp.name]) if after < s <= step]
            if due:
                self.writer.write_weights([pp], due[-1], len(self.snapshots[pp.name]), step * self.cfg.run.dt_ms)

    def _end_of_window(self, t0: int) -> None:
        """Checkpoint when due (or when a signal asks to stop: then Interrupted), report, progress bar."""
        t, total, ck = self.step, self.grid.total, self.grid.checkpoint
        fault_point("chunk", self.comm.rank)
        signum = self.stop.agreed(self.comm) if t < total else 0
        if ck and t < total and (signum or t // ck > t0 // ck):
            t_ck = time.perf_counter()
            self.writer.checkpoint(t, self.net.state, self.net.ring,
                                   {"pop_spikes": self.pop_spikes.tolist(),
                                    "synaptic_events": self.events + int(self.prof[4])}, self.net.plastic)
            self.timers["checkpoint_s"] += time.perf_counter() - t_ck
        if signum:
            raise Interrupted(signum, self.t_ms, checkpointed=bool(ck))
        if self.report:
            spikes = np.sum(self.comm.allgather(self.pop_spikes), axis=0)
            secs = max(self.t_ms, self.grid.dt_ms) / 1000.0
            self.report(Progress(self.t_ms, {p.name: int(spikes[k]) for k, p in enumerate(self.cfg.populations)},
                                 {p.name: float(spikes[k]) / p.n / secs for k, p in enumerate(self.cfg.populations)}))
        self.bar.update(round(self.t_ms) - self.bar.n)

    # ------------------------------------------------------------ setup and totals
    def _load_loop_kernels(self) -> float:
        """Compile (or load the cached) loop kernels before the loop is timed, and store the weights at step 0."""
        t_jit = time.perf_counter()
        net, k = self.net, self.kernels
        cur, kick, on = net.drive.window(0, 1)
        k.draw_ahead(self.neurons, self.pois, DriveWindow(cur, kick, on, 0, self.x_ahead[:0]), 0, self.x_ahead[:1])
        rec = _Window(0, 0, 0, np.zeros((1, net.n_local), np.uint16), np.zeros((1, net.n_local), np.uint32), 0,
                      np.zeros((1, 4, self.n_probes), np.float32))
        self._update(cur, kick, on, rec, 0, 0, self.m, 0, 0)
        self.prof[:] = 0
        steps, gids = k.sort_keys(np.zeros(0, np.int64), 0, self.cfg.n_total)
        k.deliver(steps, gids, 0, steps.size, net.ring, self.syn)
        for pp in net.plastic:
            k.apply_plastic(pp, net.conn, self.cfg.run.dt_ms, steps, gids, self.spk_step[:0], self.spk_gid[:0],
                            net.lo, net.ring)
        if self.start == 0:
            self._snapshots(0)
        self.timers["update_s"] = 0.0
        return time.perf_counter() - t_jit

    def _rank_totals(self) -> dict[str, Any]:
        """This rank's spikes per population, events and timers (the kernel's cycle counts in seconds)."""
        timers = dict(self.timers)
        timers["simulate_s"] = self.sim_s
        timers["simulate_cpu_s"] = self.sim_cpu_s  # CPU time of the process (its store writer threads too)
        per_tick = self.sim_s / max(1, self.ticks)
        for key, ticks in zip(("drive_s", "neuron_s", "bookkeeping_s", "deliver_local_s"), self.prof[:4],
                              strict=True):
            timers[key] = float(ticks) * per_tick
        timers["deliver_s"] += timers.pop("deliver_local_s")
        timers["drive_s"] += timers["drive_ahead_s"]
        timers["update_s"] += timers["drive_ahead_s"]  # kept apart too: the exchange wait it filled
        timers["neuron_steps"] = float(self.net.n_local) * (self.grid.total - self.start)
        return {"pop_spikes": self.pop_spikes, "synaptic_events": self.events + int(self.prof[4]),
                "timings": {"jit_s": self.jit_s, **timers}}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(cfg: Config, raw: dict, run_dir: str | Path, force: bool = False, progress: bool = True,
        comm: Comm | None = None, separate_phases: bool = False, keep_others: bool = False,
        report: Callable[[Progress], None] | None = None) -> RunSummary:
    """Simulate `cfg` into a new run directory and return the summary (also stored in attrs).

    On several ranks every rank calls this with its communicator and the same arguments. Bad input and
    an unusable run directory raise on every rank before anything is built; a failure during the run
    leaves the run marked `failed`, a signal marks it `interrupted` (after a last checkpoint).
    """
    comm = comm or SingleProcess()
    run_dir = Path(run_dir)
    if cfg.is_rate_network:
        if comm.size > 1:
            raise ConfigError("rate networks run on one process; start without mpiexec")
        sim: Simulation | RateSimulation = RateSimulation.create(cfg, raw, run_dir, force=force,
                                                                 keep_others=keep_others, progress=progress,
                                                                 report=report)
    else:
        sim = Simulation.create(cfg, raw, run_dir, force=force, keep_others=keep_others, comm=comm,
                                progress=progress, separate_phases=separate_phases, report=report)
    with sim:
        sim.advance_to(cfg.run.t_ms)
        return sim.close()


def resume(run_dir: str | Path, progress: bool = True, comm: Comm | None = None,
           report: Callable[[Progress], None] | None = None) -> RunSummary:
    """Continue a killed, failed or interrupted run from its last checkpoint, on any number of ranks.

    The final store is bitwise the one an uninterrupted run gives: the state and the delay buffer are
    stored per gid, and every random draw is a function of (seed, purpose, name, gid, step).
    """
    with Simulation.resume(run_dir, comm=comm, progress=progress, report=report) as sim:
        sim.advance_to(sim.cfg.run.t_ms)
        return sim.close()


def _new_store(cfg: Config, raw: dict, run_dir: Path, force: bool, keep_others: bool, edges: np.ndarray,
               block: int, drive_samples: dict[int, np.ndarray]) -> RunLock:
    """Claim and lock the run directory and lay out the store (one process)."""
    lock = claim(run_dir, force, keep_others)
    try:
        attrs = {**provenance.run_attrs(cfg, raw, edges.size - 1), "rank_bounds": edges.tolist()}
        create_store(run_dir, cfg, attrs, probe_gids(cfg), block, N_STATE, drive_samples)
    except OSError as e:
        shutil.rmtree(run_dir / "run.zarr", ignore_errors=True)
        lock.release()
        raise RunDirError(f"cannot create the run store in {run_dir}: {e.strerror or e}") from None
    return lock


def _on_rank0(comm: Comm, action: Callable[[], Any]) -> Any:
    """Run `action` on rank 0; a RunDirError or ConfigError it raises is raised on every rank."""
    result, error = None, None
    if comm.rank == 0:
        try:
            result = action()
        except (RunDirError, ConfigError) as e:
            error = e
    error = comm.bcast(error)
    if error:
        raise error
    return result


def _summary(cfg: Config, net: LocalNetwork, comm: Comm, result: dict[str, Any], run_dir: Path,
             t_wall: float) -> RunSummary:
    """Collective: the run's totals, rates and timings over every rank."""
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
    return RunSummary(
        populations=pops, spikes=total, mean_rate_hz=total / cfg.n_total / secs,
        synapses=sum(t[2] for t in gathered), synaptic_events=sum(t[1] for t in gathered),
        connectivity_bytes=sum(t[3] for t in gathered), n_ranks=comm.size,
        timings={"build_s": max(t[6] for t in gathered), **timings, "wall_s": time.perf_counter() - t_wall},
        run_dir=str(run_dir), timings_per_rank=[t[5] for t in gathered], peak_rss_mb=max(t[4] for t in gathered),
        peak_rss_mb_per_rank=[t[4] for t in gathered])
