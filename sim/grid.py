"""The run's time grid, computed once from the config: every step count the engine, the store and
the size estimate use (dt, duration, count bins, probe samples, checkpoints, weight snapshots).

Step k covers (k dt, (k + 1) dt]; a spike in step k has time (k + 1) dt. Count bin b holds the
spikes with time in (b bin_ms, (b + 1) bin_ms]; probe sample s is taken at the end of step
(s + 1) probe_every - 1, i.e. at time (s + 1) probe_every dt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eilab.sim.config import Config


@dataclass(frozen=True)
class TimeGrid:
    dt_ms: float
    total: int          # steps in the run
    bin: int            # steps per count bin; 0: no counts
    n_bins: int
    probe_every: int    # steps between probe samples
    n_samples: int      # probe samples (when the run has probes)
    checkpoint: int     # steps between checkpoints; 0: none

    @classmethod
    def of(cls, cfg: Config) -> TimeGrid:
        total = cfg.steps(cfg.run.t_ms)
        bin_steps = cfg.steps(cfg.record.counts_bin_ms) if cfg.record.counts_bin_ms > 0 else 0
        every = cfg.steps(cfg.record.probe_every_ms or cfg.run.dt_ms)
        return cls(dt_ms=cfg.run.dt_ms, total=total, bin=bin_steps, n_bins=-(-total // bin_steps) if bin_steps else 0,
                   probe_every=every, n_samples=total // every,
                   checkpoint=cfg.steps(cfg.run.checkpoint_every_ms) if cfg.run.checkpoint_every_ms > 0 else 0)

    def snapshots(self, every_ms: float) -> list[int]:
        """Steps at which plastic weights are stored: 0, every `every_ms`, and the end."""
        every = round(every_ms / self.dt_ms) if every_ms > 0 else self.total
        return sorted({*range(0, self.total, every), self.total})

    def first_bin(self, step: int) -> int:
        """The count bin that step `step` falls in (windows start on bin edges)."""
        return step // self.bin if self.bin else 0

    def first_sample(self, step: int) -> int:
        """The first probe sample taken at or after step `step`."""
        return -(-(step + 1) // self.probe_every) - 1


WINDOW_TARGET_STEPS = 10000


def window_steps(min_delay: int, bin_steps: int, probe_every: int, checkpoint: int) -> int:
    """Steps per window of the engine loop: whole slices (min_delay), bins and probe intervals, about
    WINDOW_TARGET_STEPS and at most one checkpoint interval, so each window end crosses at most one
    checkpoint."""
    unit = math.lcm(min_delay, bin_steps or 1, probe_every or 1)
    target = min(WINDOW_TARGET_STEPS, checkpoint or WINDOW_TARGET_STEPS)
    return unit * max(1, target // unit)
