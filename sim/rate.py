"""Rate networks: tau_m dr/dt = -r + F(u), u = W r + X, stored in the same run format.

W comes from the same projections as a spiking network (each synapse adds its weight, signed by
the projection's `sign`, by default Dale's law from the presynaptic type, so a neuron's mean input
is sum_b K_ab J_ab r_b), plus matrix.scale times the W[post, pre] of `matrix.file` when given (stored
in the run as connectivity/W); X from the drive: Poisson drives give their mean, rate_hz * indegree *
weight, currents their value (in the same input units) and I_e. X is held over each step.
Rates are in Hz; `rates` (time_bin, neuron) holds r at the end of each bin; probes record r
(as `v`), the parts of W r through positive and negative weights (`syn_e`, `syn_i`) and X (`ext`) at the end
of each sampled step.

Integration: a linear network (every population linear, at most EXACT_MAX_UNITS units) is
propagated exactly, r <- e^{A dt} r + (int_0^dt e^{A s} ds) b with A = (G W - 1)/tau and
b = G X/tau (zero-order hold), from one matrix exponential (Van Loan 1978), so also for singular
A (integrator modes). Otherwise ETD2RK (Cox & Matthews 2002, J. Comput. Phys. 176:430), an
exponential Runge-Kutta scheme of second order that is exact for the leak and keeps every fixed
point r* = F(W r* + X) exactly.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit
from tqdm import tqdm

from eilab.sim import provenance
from eilab.sim.config import Config, file_weights, load_matrix
from eilab.sim.drive import DriveTable
from eilab.sim.exchange import SingleProcess
from eilab.sim.grid import TimeGrid
from eilab.sim.interrupt import Interrupted, StopRequests
from eilab.sim.models import initial_values
from eilab.sim.network import RECEPTOR_E, RECEPTOR_I, Connectivity, build_connectivity, population_offsets, probe_gids
from eilab.sim.partition import block_size
from eilab.sim.rundir import RunLock, claim
from eilab.sim.step import target_blocks
from eilab.sim.store import RankWriter, close_on_error, create_store, mark_failed, write_matrix
from eilab.sim.summary import Progress, RunSummary

# A dense exponential of the 2n x 2n Van Loan matrix costs ~30 (2n)^3 flops (seconds at 500 units,
# a minute or more at 2000) and about ten 2n x 2n matrices (1.3 GB at 2000 units); larger linear
# networks are integrated with ETD2RK.
EXACT_MAX_UNITS = 2000
# [13/13] Pade coefficients and the 1-norm bound up to which they give double precision (Higham 2005)
_PADE13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0, 129060195264000.0,
           10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0)
_THETA13 = 5.371920351148152


@njit(cache=True)
def recurrent_input(r, syn, u_e, u_i) -> None:
    """u_e, u_i = the parts of W r through E-receptor and through I-receptor projections (the latter as
    magnitude), scattered along the CSR (syn: step.Synapses; per-synapse weights where own_w)."""
    pre_gid0, pre_n, row0, stride, receptor, _, weight, rowptr, targets, _, own_w, _, syn_w, _, blocks, bits = syn
    nb = target_blocks(rowptr, blocks)
    u_e[:] = 0.0
    u_i[:] = 0.0
    for q in range(pre_gid0.size):
        out = u_e if receptor[q] == 0 else u_i
        for k in range(pre_n[q]):
            rk = r[pre_gid0[q] + k]
            if rk == 0.0:
                continue
            row = row0[q] + k * stride[q]
            for blk in range(row * nb, (row + 1) * nb):  # the row's runs of targets by block (step.deliver)
                base = (blk - row * nb) << bits
                for s in range(blocks[blk], blocks[blk + 1]):
                    out[base + targets[s]] += rk * (syn_w[s] if own_w[q] else weight[q])


def transfer(u: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """F(u) in Hz for one population's parameters."""
    g, th = params["gain"], params["threshold"]
    if params["transfer"] == "linear":
        return g * u
    if params["transfer"] == "rectified":
        return g * np.maximum(u - th, 0.0)
    return params["r_max"] / (1.0 + np.exp(-(g * u - th)))


def signed_connectivity(cfg: Config) -> Connectivity:
    """All projections onto all units, each on receptor E (+) or I (-) by its sign (Config.sign_of)."""
    conn = build_connectivity(cfg, 0, cfg.n_total)
    for q, pr in enumerate(cfg.projections):
        conn.receptor[q] = RECEPTOR_E if cfg.sign_of(pr) > 0 else RECEPTOR_I
    return conn


def dense_weights(conn: Connectivity, n: int) -> np.ndarray:
    """Signed W[post, pre] (n, n) of a single-rank connectivity; multapses add up."""
    w = np.zeros((n, n))
    for q in range(conn.pre_gid0.size):
        pre, post = conn.synapses(q)
        sign = 1.0 if conn.receptor[q] == RECEPTOR_E else -1.0
        np.add.at(w, (post.astype(np.int64), pre + conn.pre_gid0[q]), sign * conn.weights(q))
    return w


def expm(a: np.ndarray) -> np.ndarray:
    """Matrix exponential e^a: scaling and squaring with the [13/13] Pade approximant
    (Higham 2005, SIAM J. Matrix Anal. Appl. 26:1179), accurate to double precision."""
    norm = float(np.linalg.norm(a, 1))
    s = max(0, math.ceil(math.log2(norm / _THETA13))) if norm > 0 else 0
    a = a / 2.0**s
    b = _PADE13
    ident = np.eye(a.shape[0])
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2) + b[7] * a6 + b[5] * a4 + b[3] * a2 + b[1] * ident)
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 + b[0] * ident
    e = np.linalg.solve(v - u, v + u)
    for _ in range(s):
        e = e @ e
    return e


def zoh_propagator(a: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(e^{a dt}, int_0^dt e^{a s} ds) of dr/dt = a r + b with b held over dt, as blocks of the
    exponential of [[a, 1], [0, 0]] dt (Van Loan 1978, IEEE Trans. Autom. Control 23:395): no
    inverse of a, so exact also for singular a. dt in the time unit of a."""
    n = a.shape[0]
    m = np.zeros((2 * n, 2 * n))
    m[:n, :n] = a * dt
    m[:n, n:] = np.eye(n) * dt
    e = expm(m)
    return e[:n, :n], e[:n, n:]


class RateNetwork:
    """Units, connectivity and per-unit constants of a rate network; `step` advances r by dt (ms)."""

    def __init__(self, cfg: Config, matrix: np.ndarray | None = None) -> None:
        """`matrix`: the W of `matrix.file` as stored in a run, before matrix.scale (default: read the file)."""
        self.n, self.dt = cfg.n_total, cfg.run.dt_ms
        offs = population_offsets(cfg)
        self.pops = [(offs[p.name], offs[p.name] + p.n, p.params) for p in cfg.populations]
        self.conn = signed_connectivity(cfg)
        self.w_file = file_weights(cfg, matrix)
        if self.w_file is not None:  # its parts through positive and negative weights, for `recurrent`
            self.w_pos, self.w_neg = np.maximum(self.w_file, 0.0), np.maximum(-self.w_file, 0.0)
        tau = np.concatenate([np.full(b - a, p["tau_m"]) for a, b, p in self.pops])
        h = self.dt / tau
        self.decay = np.exp(-h)  # ETD2RK: leak over a step and its second-stage weight 1 - (1 - e^-h)/h
        self.corr = 1.0 + np.expm1(-h) / h
        linear = all(p["transfer"] == "linear" for _, _, p in self.pops)
        self.exact = linear and self.n <= EXACT_MAX_UNITS
        if self.exact:
            gain = np.concatenate([np.full(b - a, p["gain"]) for a, b, p in self.pops])
            w = dense_weights(self.conn, self.n) + (0.0 if self.w_file is None else self.w_file)
            a = (gain[:, None] * w - np.eye(self.n)) / tau[:, None]
            self.phi, gamma = zoh_propagator(a, self.dt)
            self.gamma_x = gamma * (gain / tau)[None, :]
            self.scheme = "exact: matrix exponential, input held over each step"
        else:
            self.scheme = "ETD2RK (exponential Runge-Kutta, order 2)"
            if linear:
                self.scheme += f": linear network above EXACT_MAX_UNITS = {EXACT_MAX_UNITS} units"
                warnings.warn(f"rate network of {self.n} linear units: integrated with ETD2RK (order 2); exact "
                              f"matrix-exponential propagation is limited to {EXACT_MAX_UNITS} units", stacklevel=2)

    def recurrent(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The parts of W r through positive and through negative weights (magnitude)."""
        u_e, u_i = np.zeros(self.n), np.zeros(self.n)
        c = self.conn
        recurrent_input(r, c.kernel_args(), u_e, u_i)
        if self.w_file is not None:
            u_e += self.w_pos @ r
            u_i += self.w_neg @ r
        return u_e, u_i

    def rate_of(self, r: np.ndarray, x: np.ndarray) -> np.ndarray:
        """F(W r + x), Hz."""
        u_e, u_i = self.recurrent(r)
        u = u_e - u_i + x
        return np.concatenate([transfer(u[a:b], p) for a, b, p in self.pops])

    def step(self, r: np.ndarray, x: np.ndarray) -> np.ndarray:
        """r one step later, with the input x held over the step."""
        if self.exact:
            return self.phi @ r + self.gamma_x @ x
        f = self.rate_of(r, x)
        a = f + (r - f) * self.decay  # exponential Euler predictor, then the second-order correction
        return a + (self.rate_of(a, x) - f) * self.corr


class RateSimulation:
    """A rate-network run with the lifecycle of engine.Simulation: `create` (claim the run directory,
    lay out the store, build), `advance_to(t_ms)` any number of times, `close()`; a context manager
    that closes the run as interrupted (SIGTERM, Ctrl-C) or failed. One process."""

    def __init__(self, cfg: Config, run_dir: Path, lock: RunLock, writer: RankWriter, drive: DriveTable,
                 progress: bool, report: Callable[[Progress], None] | None, t_wall: float,
                 matrix: np.ndarray | None = None) -> None:
        self.cfg, self.run_dir, self.lock, self.writer, self.report, self.t_wall = (cfg, run_dir, lock, writer, report,
                                                                                     t_wall)
        self.grid = TimeGrid.of(cfg)
        self.net = RateNetwork(cfg, matrix)
        self.drive = drive
        n = cfg.n_total
        mu, w = self.drive.poisson()
        self.x_const = np.zeros(n)  # I_e
        self.x_poisson = mu / cfg.run.dt_ms * 1000.0 * w  # mean Poisson input while on: events/step -> Hz x weight
        self.r = np.zeros(n)
        for p, (a, b, params) in zip(cfg.populations, self.net.pops, strict=True):
            self.x_const[a:b] = params["I_e"]
            self.r[a:b] = initial_values(0.0 if p.v_init is None else p.v_init, cfg.run.seed, a, b - a, 0)
        self.probes = probe_gids(cfg)
        self.late = np.zeros(len(self.net.pops))  # mean population rate over the second half of the run
        self.late_steps = 0
        self.step = 0
        self.sim_s = 0.0
        self.t_built = time.perf_counter()
        self.stop = StopRequests()
        self.bar = tqdm(total=self.grid.total, disable=not progress, desc=cfg.run.name, leave=False)

    @classmethod
    def create(cls, cfg: Config, raw: dict, run_dir: str | Path, *, force: bool = False, keep_others: bool = False,
               progress: bool = True, report: Callable[[Progress], None] | None = None) -> RateSimulation:
        t_wall = time.perf_counter()
        run_dir = Path(run_dir)
        # matrix.file and drive files are read (and drive formulas checked) before the run directory is
        # claimed; the run keeps the files' content (self-contained)
        matrix, sha256 = load_matrix(cfg.matrix.file, cfg.n_total) if cfg.matrix is not None else (None, "")
        drive = DriveTable(cfg)
        lock = claim(run_dir, force, keep_others)
        try:
            n = cfg.n_total
            probes = probe_gids(cfg)
            create_store(run_dir, cfg, {**provenance.run_attrs(cfg, raw, 1), "rank_bounds": [0, n]}, probes,
                         block_size(n), 1, drive.samples)
            if cfg.matrix is not None:
                write_matrix(run_dir, matrix, cfg.matrix.file, sha256)
            writer = RankWriter(run_dir, cfg, SingleProcess(), 0, n, probes)
            return cls(cfg, run_dir, lock, writer, drive, progress, report, t_wall, matrix)
        except BaseException as e:
            if (run_dir / "run.zarr").is_dir():
                mark_failed(run_dir, f"preparing the run: {type(e).__name__}: {e}")
            lock.release()
            raise

    def __enter__(self) -> RateSimulation:
        self.stop.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self.stop.__exit__()
        try:
            close_on_error(self.writer, self.run_dir, 0, error)
        finally:
            self.bar.close()
            self.lock.release()

    @property
    def t_ms(self) -> float:
        return self.step * self.grid.dt_ms

    def advance_to(self, t_ms: float) -> float:
        """Integrate up to t_ms (at most the run's end; whole steps); returns the time reached."""
        target = min(self.grid.total, math.ceil(t_ms / self.grid.dt_ms - 1e-9))
        t_sim = time.perf_counter()
        g, net, pops = self.grid, self.net, self.net.pops
        while self.step < target:
            t = self.step
            cur, _, on = self.drive.window(t, 1)
            x = self.x_const.copy()
            for k, (a, b, _p) in enumerate(pops):
                x[a:b] += cur[k, 0] + self.x_poisson[k] * on[k, 0]
            self.r = net.step(self.r, x)
            if g.bin and (t + 1) % g.bin == 0:
                self.writer.write_counts((t + 1) // g.bin - 1, self.r[None, :].astype(np.float32))
            if self.probes.size and (t + 1) % g.probe_every == 0:
                u_e, u_i = net.recurrent(self.r)
                sample = np.stack([self.r, u_e, -u_i, x])[:, self.probes].astype(np.float32)
                self.writer.write_probes((t + 1) // g.probe_every - 1, sample[None])
            if 2 * t >= g.total:
                self.late += [self.r[a:b].mean() for a, b, _ in pops]
                self.late_steps += 1
            self.step += 1
            self.bar.update()
            if self.stop.signum and self.step < g.total:
                raise Interrupted(self.stop.signum, self.t_ms, checkpointed=False)
        if self.report:
            self.report(Progress(self.t_ms, {p.name: 0 for p in self.cfg.populations},
                                 {p.name: float(self.r[a:b].mean()) for p, (a, b, _) in
                                  zip(self.cfg.populations, pops, strict=True)}))
        self.sim_s += time.perf_counter() - t_sim
        return self.t_ms

    def close(self) -> RunSummary:
        """After the last advance_to: the summary, stored with status `complete`."""
        if self.step < self.grid.total:
            raise RuntimeError(f"close() at t = {self.t_ms} ms: the run ends at {self.cfg.run.t_ms} ms; "
                               "advance_to(its end) first")
        late = self.late / max(1, self.late_steps)
        pops, n, r = self.net.pops, self.cfg.n_total, self.r
        summary = RunSummary(
            populations={p.name: {"n": p.n, "spikes": 0, "rate_hz": float(late[k]),
                                  "final_rate_hz": float(r[a:b].mean())}
                         for k, (p, (a, b, _)) in enumerate(zip(self.cfg.populations, pops, strict=True))},
            spikes=0, mean_rate_hz=float(np.dot(late, [p.n for p in self.cfg.populations]) / n),
            synapses=self.net.conn.n_synapses, synaptic_events=0, connectivity_bytes=self.net.conn.nbytes, n_ranks=1,
            timings={"build_s": self.t_built - self.t_wall, "simulate_s": self.sim_s,
                     "wall_s": time.perf_counter() - self.t_wall},
            run_dir=str(self.run_dir), rate_definition="population mean of r over the second half of the run",
            integration=self.net.scheme)
        self.writer.close("complete", summary=summary.as_dict(), finished=datetime.now(UTC).isoformat())
        return summary
