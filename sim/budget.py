"""Memory and disk a run will need, estimated from the config before anything is built.

The estimate adds the arrays the engine and the store allocate: the
connectivity (a uint16 target per synapse, row pointers per target block), neuron state, the delay ring, the per-window
buffers (drive, spike counts, probe samples) and the coordinate arrays of the store; on disk the
counts (or rates), probe traces, weight snapshots and checkpoints, uncompressed. Spike trains
are not counted (their number is not known before the run). Sizes are for the whole network
on one machine: runs spread over several machines may pass `--no-size-check`.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import psutil

from eilab.sim.config import Config, ConfigError, Projection
from eilab.sim.engine import SPIKE_SLACK
from eilab.sim.exchange import Comm, SingleProcess
from eilab.sim.grid import TimeGrid, window_steps
from eilab.sim.models import N_STATE
from eilab.sim.network import TARGET_BLOCK_BITS
from eilab.sim.reader import PROBE_VARS

GIB = float(1 << 30)
SNAPSHOT_LIST_BYTES = 100
"""Python bytes per weight-snapshot step held in the lists that schedule them."""


def synapse_count(cfg: Config, pr: Projection) -> float:
    """Expected synapses of one projection (ring: the upper bound of its box of radius `radius`)."""
    sizes = {p.name: p.n for p in cfg.populations}
    n_pre, n_post = sizes[pr.pre], sizes[pr.post]
    if pr.rule == "fixed_indegree":
        return float(pr.k) * n_post
    if pr.rule == "bernoulli":
        return float(pr.p) * n_pre * n_post
    return float(pr.p) * min(n_pre, 2 * math.ceil(pr.radius * n_pre) + 1) * n_post


def _time_samples(grid: TimeGrid, cfg: Config) -> tuple[int, int, int]:
    """(count bins, probe samples, probed neurons) of the whole run."""
    probed = len({(pb.population, k) for pb in cfg.record.probes for k in pb.neurons})
    return grid.n_bins, grid.n_samples if probed else 0, probed


def _snapshots(grid: TimeGrid, pr: Projection) -> int:
    every = pr.plasticity.snapshot_every_ms
    return grid.total // round(every / grid.dt_ms) + 2 if every > 0 else 2


def memory_bytes(cfg: Config) -> dict[str, float]:
    """Estimated peak memory of a run by part, bytes."""
    n, grid = cfg.n_total, TimeGrid.of(cfg)
    blocks = -(-n // (1 << TARGET_BLOCK_BITS))  # target blocks per row (network.build_connectivity)
    synapses = rows = plastic = snapshot_lists = 0.0
    own_w = any(cfg.own_weights(pr) for pr in cfg.projections)
    own_d = any(pr.delay_dist != "fixed" for pr in cfg.projections)
    per_synapse = 2 + 4 * own_w + 2 * own_d  # uint16 targets; syn_w and syn_d span every synapse when present
    for pr in cfg.projections:
        s = synapse_count(cfg, pr)
        synapses += s * per_synapse
        rows += 16.0 * blocks * next(p.n for p in cfg.populations if p.name == pr.pre)  # pointer, length per block
        if pr.plasticity is not None:
            w_bytes = 8 if pr.plasticity.precision == "float64" else 4
            plastic += s * (w_bytes + 4) + 16.0 * n  # weights, synapses by target, traces
            snapshot_lists += SNAPSHOT_LIST_BYTES * _snapshots(grid, pr)
    delays = [cfg.delay_range(pr)[0] for pr in cfg.projections]
    min_delay = min(delays) if delays else max(1, cfg.steps(min(cfg.run.t_ms, 10.0)))
    bins, samples, probed = _time_samples(grid, cfg)
    bin_steps = grid.bin
    probe_every = grid.probe_every if probed else 0
    chunk = min(window_steps(min_delay, bin_steps, probe_every, grid.checkpoint), grid.total)
    return {
        "synapses": synapses + plastic,
        "connectivity rows": rows,
        "neuron state": 8.0 * N_STATE * n,
        "delay ring": 8.0 * 2 * cfg.max_delay_steps * n + 8.0 * min_delay * n,
        "spike buffer": 12.0 * (n * min_delay + SPIKE_SLACK),
        "drive window": 8.0 * chunk * (3 * len(cfg.populations) + 8),
        "counts window": (2.0 + 4.0 * cfg.record.drive_counts) * (chunk // bin_steps + 1) * n if bins else 0.0,
        "probe window": 16.0 * len(PROBE_VARS) * (chunk // probe_every + 1) * probed if probed else 0.0,
        "time axes": 16.0 * (bins + samples) + 12.0 * n + snapshot_lists,
    }


def disk_bytes(cfg: Config) -> dict[str, float]:
    """Estimated size of the stored run by part (uncompressed, spike trains left out), bytes."""
    n, grid = cfg.n_total, TimeGrid.of(cfg)
    bins, samples, probed = _time_samples(grid, cfg)
    weights = sum(4.0 * synapse_count(cfg, pr) * _snapshots(grid, pr) for pr in cfg.projections if pr.plasticity)
    checkpoints = 2 * 8.0 * (N_STATE + 2 * cfg.max_delay_steps) * n if cfg.run.checkpoint_every_ms > 0 else 0.0
    return {
        "rates" if cfg.is_rate_network else "counts": (4.0 if cfg.is_rate_network else 2.0) * bins * n,
        "probes": 4.0 * len(PROBE_VARS) * samples * probed,
        "drive counts": 4.0 * bins * n if cfg.record.drive_counts else 0.0,
        "weight snapshots": weights,
        "checkpoints": checkpoints,
        "time axes": 8.0 * (bins + samples) + 4.0 * n,
    }


def _existing(path: Path) -> Path:
    """The nearest existing folder at or above `path` (where its disk space is measured)."""
    path = path.absolute()
    while not path.is_dir():
        path = path.parent
    return path


def _describe(parts: dict[str, float]) -> str:
    big = sorted(((v, k) for k, v in parts.items() if v >= 0.01 * sum(parts.values())), reverse=True)[:3]
    return ", ".join(f"{k} {v / GIB:.3g} GiB" for v, k in big)


def refusal(cfg: Config, available_memory: float, free_disk: float, where: Path) -> str | None:
    """Why the run does not fit `available_memory` and `free_disk` (bytes), or None if it does."""
    mem, disk = memory_bytes(cfg), disk_bytes(cfg)
    need_mem, need_disk = sum(mem.values()), sum(disk.values())
    fix = ("lower the size (population n, projection k or p, run.t_ms, record.counts_bin_ms, probes) or pass "
           "--no-size-check to run anyway")
    if need_mem > available_memory:
        return (f"the run needs about {need_mem / GIB:.3g} GiB of memory ({_describe(mem)}), "
                f"{available_memory / GIB:.3g} GiB is available: {fix}")
    if need_disk > free_disk:
        return (f"the run stores up to {need_disk / GIB:.3g} GiB ({_describe(disk)}), {free_disk / GIB:.3g} GiB "
                f"is free at {where}: {fix}")
    return None


def check_size(cfg: Config, out: str | Path, comm: Comm | None = None) -> None:
    """Raise a ConfigError with the estimate if the run needs more memory than is available or more
    disk than is free at `out`; rank 0 decides for all ranks."""
    comm = comm or SingleProcess()
    reason = None
    if comm.rank == 0:
        where = _existing(Path(out))
        reason = refusal(cfg, psutil.virtual_memory().available, shutil.disk_usage(where).free, where)
    reason = comm.bcast(reason)
    if reason:
        raise ConfigError(reason)
