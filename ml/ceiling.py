"""The predictability ceiling (issue 22, point 6): how much of the next bin no predictor can know that does
not see the future drive (docs/architecture.md, "Learning from runs").

A held-out run is replayed in this process from its stored config: one process builds every gid
(`build_local`) and steps it with the engine's kernels (`backend`, step.advance with local delivery), which
gives bitwise the stored run, since every draw is a function of (seed, purpose, gid, step) and the replay
keeps the run's own Poisson streams. At branch times t_j (bin edges after the transient) the neuron state and
the delay ring are copied; the network goes on for `horizon` bins under each of M other drive seeds (only the
Poisson streams re-keyed, as run.drive_seed does; connectivity and state untouched), is put back, and the
replay goes on to the next branch time. Nothing is written to the run.

The variance across drive seeds (ddof = 1) of the count in bin h after t_j is the mean squared error the best
predictor given the whole network state at t_j still makes on that bin; its mean over branch points is the
ceiling: the least MSE of any predictor of bin h from the state, let alone from past counts. With
`data.external` the next bin's drive is still unseen, so the next-bin ceiling holds; rollouts that are fed the
true drive of bins 1 .. h - 1 may go below the ceiling of bin h > 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from eilab.sim.backend import backend
from eilab.sim.build import build_local
from eilab.sim.config import ConfigError
from eilab.sim.drive import DriveTable
from eilab.sim.grid import WINDOW_TARGET_STEPS
from eilab.sim.reader import Run
from eilab.sim.rng import PURPOSE_POISSON, keys_for
from eilab.sim.step import DriveWindow, Neurons, PoissonDrive, Recording

SPIKE_SLACK = 1 << 16
SEED_SALT = 0xCE11
TYPES = ("E", "I")


class Replay:
    """A stored run stepped again in this process (module docstring), from t = 0, under any drive seeds."""

    def __init__(self, run: Run) -> None:
        cfg = run.config
        if cfg.is_rate_network:
            raise ConfigError(f"{run.path}: a rate network has no Poisson drive to branch; the ceiling needs a "
                              "spiking network")
        self.cfg = cfg
        self.net = net = build_local(cfg, 0, cfg.n_total, DriveTable(cfg, run.drive_samples()))
        if net.plastic:
            raise ConfigError(f"{run.path}: plastic projections ({', '.join(p.name for p in net.plastic)}) are not "
                              "branched; the ceiling needs a network with static weights")
        self.own_seed = cfg.run.seed if cfg.run.drive_seed is None else cfg.run.drive_seed
        self.step, self.m = 0, net.min_delay
        self.kernels = backend("cpu")
        self.neurons = Neurons(net.state, net.pop_model, net.pop_lo, net.pop_hi, net.pop_gid0, net.params)
        self.syn = net.conn.kernel_args()
        n = net.n_local
        cap = n * self.m + SPIKE_SLACK
        self.spikes = (np.empty(cap, np.int64), np.empty(cap, np.int32), np.empty(cap))
        self.no_probes = np.full(n, -1, np.int64)
        self.type_of = np.zeros(n, np.int64)
        for p in run.populations.values():
            self.type_of[p["gid0"] : p["gid0"] + p["n"]] = TYPES.index(p["type"])

    def drive(self, drive_seed: int) -> PoissonDrive:
        """The Poisson drive under the streams of `drive_seed` (run.drive_seed)."""
        net = self.net
        return PoissonDrive(net.pois_mu, net.pois_w, keys_for(drive_seed, PURPOSE_POISSON, 0, net.n_local),
                            net.pois_cdf, net.pois_guide)

    def advance(self, steps: int, drive: PoissonDrive, counts: np.ndarray | None = None, bin_steps: int = 0) -> None:
        """Simulate `steps` steps from self.step under `drive`; with `counts` (bins, neurons) uint16, add each
        neuron's spikes in bins of bin_steps counted from self.step (a whole multiple of bin_steps)."""
        n = self.net.n_local
        counts = np.zeros((0, n), np.uint16) if counts is None else counts
        bin_t0 = self.step // bin_steps if bin_steps else 0
        rec = Recording(*self.spikes, counts, np.zeros((0, n), np.uint32), bin_steps, bin_t0, self.no_probes, 0, 0,
                        np.zeros((0, 4, 1), np.float32), np.zeros(5, np.int64))
        chunk = self.m * max(1, WINDOW_TARGET_STEPS // self.m)
        t, end = self.step, self.step + steps
        while t < end:
            stop = min(end, t + chunk)
            cur, kick, on = self.net.drive.window(t, stop - t)
            win = DriveWindow(cur, kick, on, t, np.zeros((0, n)))
            while t < stop:  # whole slices, then the rest as one short slice (delays >= m: the same arrivals)
                m = min(self.m, stop - t)
                done, _ = self.kernels.advance(self.neurons, drive, win, self.syn, rec, self.net.ring, t,
                                               (stop - t) // m, m, True, 0)
                t += done * m
        self.step = end

    def branch(self, drive_seeds: Sequence[int], n_bins: int, bin_steps: int) -> np.ndarray:
        """Counts (seeds, n_bins, neurons) of the next n_bins bins of bin_steps from self.step under each drive
        seed, every branch from the same state; the state, ring and step are put back afterwards."""
        state, ring, step = self.net.state.copy(), self.net.ring.copy(), self.step
        out = np.zeros((len(drive_seeds), n_bins, self.net.n_local), np.uint16)
        for i, seed in enumerate(drive_seeds):
            self.advance(n_bins * bin_steps, self.drive(seed), out[i], bin_steps)
            self.net.state[:], self.net.ring[:], self.step = state, ring, step
        return out

    def outputs(self, counts: np.ndarray, outputs: str) -> np.ndarray:
        """Counts (..., neurons) as the predicted outputs: every neuron, or the E and I sums."""
        if outputs == "neurons":
            return counts.astype(np.float64)
        return np.stack([counts[..., self.type_of == t].sum(axis=-1, dtype=np.float64) for t in range(len(TYPES))],
                        axis=-1)


def drive_seeds(own: int, m: int) -> list[int]:
    """M drive seeds for the branches of a run whose drive seed is `own`: fixed, distinct from it, < 2**63."""
    words = np.random.SeedSequence([own, SEED_SALT]).generate_state(m + 1, np.uint64) >> np.uint64(1)
    return [int(w) for w in words if int(w) != own][:m]


def branch_bins(n_bins: int, first: int, horizon: int, count: int) -> np.ndarray:
    """Up to `count` branch bins evenly spread over [first, n_bins - horizon] (every bin when fewer)."""
    last = n_bins - horizon
    if count <= 0 or last < first:
        return np.zeros(0, np.int64)
    return np.unique(np.rint(np.linspace(first, last, min(count, last - first + 1))).astype(np.int64))


def spreads(replay: Replay, at_bins: np.ndarray, seeds: Sequence[int], horizon: int, bin_steps: int,
            outputs: str) -> Iterator[np.ndarray]:
    """Per branch bin, in order: the variance across `seeds` (ddof = 1) of each output's count in bins 1 ..
    horizon after it, (horizon, outputs); the replay runs on under its own drive between branch points."""
    own = replay.drive(replay.own_seed)
    for b in at_bins:
        replay.advance(int(b) * bin_steps - replay.step, own)
        yield replay.outputs(replay.branch(seeds, horizon, bin_steps), outputs).var(axis=0, ddof=1)


@dataclass
class Ceiling:
    """The ceiling on held-out runs from the count variance across drive seeds at each branch point,
    `per_branch` (branches, horizon, outputs), counts^2 per bin; rollout step h = 1 is the next bin."""

    bin_ms: float
    seeds: int
    per_branch: np.ndarray

    @property
    def variance(self) -> np.ndarray:
        """(horizon, outputs): the mean over branch points, the ceiling per rollout step and output."""
        return self.per_branch.mean(axis=0)

    def to_json(self) -> dict[str, Any]:
        """metrics.json's `ceiling`: next bin (mean and per output), per rollout step, standard errors over
        branch points."""
        v, j = self.per_branch, self.per_branch.shape[0]
        se_out = v[:, 0].std(axis=0, ddof=1) / np.sqrt(j) if j > 1 else np.full(v.shape[2], np.nan)
        se_steps = v.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(j) if j > 1 else np.full(v.shape[1], np.nan)
        return {"bin_ms": self.bin_ms, "branches": j, "seeds": self.seeds, "mse": float(self.variance[0].mean()),
                "se": float(se_steps[0]), "mse_per_output": self.variance[0].tolist(), "se_per_output": se_out.tolist(),
                "rollout_mse": self.variance.mean(axis=1).tolist(), "rollout_se": se_steps.tolist(),
                "rollout_mse_per_output": self.variance.tolist()}


def ceiling(runs: Sequence[Run], bin_ms: float, outputs: str, first_bin: int, horizon: int, branches: int,
            seeds: int, progress: bool = False) -> Ceiling:
    """The ceiling over `runs` for bins of bin_ms: `branches` branch points in all (spread evenly over the runs
    and, within a run, over its bins from `first_bin`), `seeds` drive seeds each, rollout steps 1 .. horizon."""
    if seeds < 2:
        raise ConfigError(f"ceiling.seeds = {seeds}: the spread across drive seeds needs at least 2")
    per_run = [len(a) for a in np.array_split(np.arange(branches), len(runs))]
    done: list[np.ndarray] = []
    with tqdm(total=branches, desc="ceiling", unit="branch", disable=not progress, leave=False) as bar:
        for run, count in zip(runs, per_run, strict=True):
            replay = Replay(run)
            bin_steps = replay.cfg.steps(bin_ms)
            if abs(bin_steps * replay.cfg.run.dt_ms - bin_ms) > 1e-9 * max(1.0, bin_ms):
                raise ConfigError(f"data.bin_ms = {bin_ms}: not a whole number of steps of {run.path} "
                                  f"(dt = {replay.cfg.run.dt_ms} ms)")
            at = branch_bins(replay.cfg.steps(replay.cfg.run.t_ms) // bin_steps, first_bin, horizon, count)
            for v in spreads(replay, at, drive_seeds(replay.own_seed, seeds), horizon, bin_steps, outputs):
                done.append(v)
                bar.update()
    if not done:
        raise ConfigError(f"the held-out runs hold no bin to branch at after bin {first_bin} with {horizon} bins to "
                          "follow: lengthen the runs or lower data.skip_ms")
    return Ceiling(bin_ms, seeds, np.stack(done))


def room_closed(model: float, ar: float, ceil: float) -> float | None:
    """The fraction of the room between the linear AR's MSE and the ceiling that the model's MSE closes
    ((ar - model) / (ar - ceil)); None when AR is at or below the ceiling (no room)."""
    return (ar - model) / (ar - ceil) if ar > ceil else None
