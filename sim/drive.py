"""External drive per population: Poisson input, currents (constant, formula, file), input spikes.

Poisson input is sampled inside the step kernel from the stream (seed, poisson, gid) at each
step; everything deterministic in time is tabulated here for a window of steps:

    cur[pop, t]   current, pA, added to I_e (formula of t in ms, or file samples held constant)
    kick[pop, t]  summed weight of input spikes arriving at step t (excitatory receptor)
    on[pop, t]    1 while the population's Poisson drive is on (start_ms <= t < stop_ms)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eilab.sim.config import Config, ConfigError, Drive
from eilab.sim.expressions import ARRAY_FUNCTIONS, evaluate

FORMULA_CHUNK_STEPS = 1 << 20
"""Steps per evaluation when a drive formula is checked over the whole run."""


def load_samples(path: str) -> np.ndarray:
    """Current samples (pA) from .npy, or text (.txt/.csv: one number per line or comma-separated).

    Errors name the file and the expected format, never its content (numpy's messages quote it).
    """
    p = Path(path)
    try:
        data = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None)
        data = np.asarray(data, dtype=np.float64).ravel()
    except (OSError, ValueError, TypeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not numeric samples"
        raise ConfigError(f"drive file {path!r}: cannot read it ({reason}); give a .npy array of numbers, or a "
                          ".txt/.csv with one number per line or comma-separated numbers, pA") from None
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ConfigError(f"drive file {path!r}: needs at least one finite sample")
    return data


def file_samples(cfg: Config) -> dict[int, np.ndarray]:
    """The samples of every drive with a file, by drive index."""
    return {i: load_samples(d.file) for i, d in enumerate(cfg.drive) if d.file}


class DriveTable:
    """Tabulates the deterministic drive of every population over windows of steps."""

    def __init__(self, cfg: Config, samples: dict[int, np.ndarray] | None = None) -> None:
        """`samples`: the drive files' samples by drive index, as stored in a run (default: read the files)."""
        self.cfg = cfg
        self.pop_index = {p.name: i for i, p in enumerate(cfg.populations)}
        self.samples = samples if samples is not None else file_samples(cfg)
        for i, d in enumerate(cfg.drive):
            if d.formula:
                check_formula(cfg, i)

    def poisson(self) -> tuple[np.ndarray, np.ndarray]:
        """Per population: mean events per step (mu) and weight of each event."""
        n = len(self.cfg.populations)
        mu, w = np.zeros(n), np.zeros(n)
        for d in self.cfg.drive:
            if d.kind == "poisson":
                k = self.pop_index[d.target]
                mu[k] = d.rate_hz * d.indegree * self.cfg.run.dt_ms / 1000.0
                w[k] = d.weight
        return mu, w

    def window(self, t0: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cur, kick, poisson_on) for steps t0 .. t0 + n - 1, shape (n_pops, n); poisson_on is 1
        where the population's Poisson drive is between its start_ms and stop_ms."""
        dt = self.cfg.run.dt_ms
        n_pop = len(self.cfg.populations)
        cur = np.zeros((n_pop, n))
        kick = np.zeros((n_pop, n))
        on = np.zeros((n_pop, n))
        steps = np.arange(t0, t0 + n)
        t = steps * dt
        for i, d in enumerate(self.cfg.drive):
            k = self.pop_index[d.target]
            active = _active(d, t)
            if d.kind == "current":
                value = np.full(n, d.amplitude)
                if d.formula:
                    value = value + np.broadcast_to(
                        evaluate(d.formula, {**self.cfg.vars, "t": t}, ARRAY_FUNCTIONS), (n,)
                    )
                if d.file:
                    s = self.samples[i]
                    idx = np.floor((t - d.start_ms) / d.file_dt_ms + 1e-9).astype(np.int64)
                    inside = (idx >= 0) & (idx < s.size)
                    value = value + np.where(inside, s[np.clip(idx, 0, s.size - 1)], 0.0)
                cur[k] += np.where(active, value, 0.0)
            elif d.kind == "poisson":
                on[k] = active
            elif d.kind == "spikes":
                at = np.rint(np.asarray(d.times_ms) / dt).astype(np.int64) - t0
                at = at[(at >= 0) & (at < n)]
                np.add.at(kick[k], at, d.weight)
        return cur, kick, on


def check_formula(cfg: Config, i: int) -> None:
    """Evaluate drive `i`'s formula at every step of the run where the drive is on: a ConfigError
    names the drive if it cannot be evaluated or is not finite (inf, nan) somewhere, pA."""
    d = cfg.drive[i]
    dt, total = cfg.run.dt_ms, cfg.steps(cfg.run.t_ms)
    for t0 in range(0, total, FORMULA_CHUNK_STEPS):
        t = np.arange(t0, min(total, t0 + FORMULA_CHUNK_STEPS)) * dt
        try:
            value = np.broadcast_to(evaluate(d.formula, {**cfg.vars, "t": t}, ARRAY_FUNCTIONS), t.shape)
        except ValueError as e:  # ExpressionError, or a result that is not one number per step
            raise ConfigError(f"drive.{i}.formula: {e}") from None
        bad = _active(d, t) & ~np.isfinite(value)
        if bad.any():
            raise ConfigError(f"drive.{i}.formula: {d.formula!r} is not finite at t = {t[bad][0]:g} ms (give a "
                              "formula of t, ms, that is a finite current, pA, while the drive is on)")


def _active(d: Drive, t: np.ndarray) -> np.ndarray:
    on = t >= d.start_ms - 1e-9
    if d.stop_ms is not None:
        on &= t < d.stop_ms - 1e-9
    return on
