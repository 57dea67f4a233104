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
from eilab.sim.expressions import ARRAY_FUNCTIONS, ExpressionError, evaluate


def load_samples(path: str) -> np.ndarray:
    """Current samples (pA) from .npy, or text (.txt/.csv: one number per line or comma-separated)."""
    p = Path(path)
    try:
        data = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None)
    except (OSError, ValueError) as e:
        raise ConfigError(f"drive file {path!r}: cannot read samples ({e}); give .npy or numeric .txt/.csv") from None
    data = np.asarray(data, dtype=np.float64).ravel()
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ConfigError(f"drive file {path!r}: needs at least one finite sample")
    return data


class DriveTable:
    """Tabulates the deterministic drive of every population over windows of steps."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.pop_index = {p.name: i for i, p in enumerate(cfg.populations)}
        self.samples = {i: load_samples(d.file) for i, d in enumerate(cfg.drive) if d.file}
        for i, d in enumerate(cfg.drive):
            if d.formula:
                try:
                    evaluate(d.formula, {**cfg.vars, "t": np.zeros(2)}, ARRAY_FUNCTIONS)
                except ExpressionError as e:
                    raise ConfigError(f"drive.{i}.formula: {e}") from None

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


def _active(d: Drive, t: np.ndarray) -> np.ndarray:
    on = t >= d.start_ms - 1e-9
    if d.stop_ms is not None:
        on &= t < d.stop_ms - 1e-9
    return on
