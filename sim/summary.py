"""What a run reports: `Progress` while it runs, `RunSummary` when it ends (stored in attrs["summary"])."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Progress:
    """What `report` receives at the end of each window (the same on every rank)."""

    t_ms: float                  # simulated time reached
    spikes: dict[str, int]       # spikes per population since the start of the run
    rates_hz: dict[str, float]   # mean rate per population over [0, t_ms]


@dataclass
class RunSummary:
    """The totals of a finished run, stored in attrs["summary"] (spiking and rate networks alike)."""

    populations: dict[str, dict[str, Any]]  # name -> n, spikes, rate_hz (rate networks: and final_rate_hz)
    spikes: int
    mean_rate_hz: float
    synapses: int
    synaptic_events: int
    connectivity_bytes: int
    n_ranks: int
    timings: dict[str, float]
    run_dir: str
    timings_per_rank: list[dict[str, float]] | None = None
    peak_rss_mb: float = 0.0
    peak_rss_mb_per_rank: list[float] | None = None
    rate_definition: str | None = None  # rate networks: how rate_hz is taken
    integration: str | None = None      # rate networks: the scheme that ran

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
