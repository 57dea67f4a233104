"""The Zarr v3 run store: one directory per run, readable with plain zarr or xarray.

    RUN_DIR/run.zarr/
      attrs            format, status (running | complete | failed), config (as given and
                       resolved), seed, dt_ms, t_ms, populations, n_ranks, versions, git commit,
                       timings, summary
      spikes/times_ms  (spike,) float64  emission time: end of the step, ms
      spikes/gids      (spike,) int32    sorted by (time, gid)
      counts           (time_bin, neuron) uint16: spikes with time in (k*bin, (k+1)*bin]
      time_bin, neuron coordinates: bin start (ms) and gid
      probes/<var>     (time, probe) float32, var in v (mV), syn_e, syn_i, ext (mV/ms)
      probes/time, probes/probe   coordinates: sample time (ms) and gid

A run is `complete` only when the writer closed it; `open_run` refuses other states unless
asked. Nothing stored is overwritten: an existing run directory needs an explicit `force`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from eilab.sim.config import Config

FORMAT = "eilab-run/1"
PROBE_VARS = ("v", "syn_e", "syn_i", "ext")
SPIKE_CHUNK = 1 << 20


class RunExistsError(FileExistsError):
    pass


class RunNotCompleteError(RuntimeError):
    pass


def _zarr_path(run_dir: Path) -> Path:
    return run_dir / "run.zarr"


def prepare_run_dir(run_dir: Path, force: bool) -> None:
    """Refuse to overwrite; with force, remove an earlier eilab run (and nothing else)."""
    if not run_dir.exists():
        return
    if not force:
        raise RunExistsError(f"run directory {run_dir} exists; choose another --out or pass --force to replace it")
    if not _zarr_path(run_dir).is_dir():
        raise RunExistsError(f"{run_dir} exists and is not an eilab run directory; not replacing it")
    shutil.rmtree(run_dir)


class RunWriter:
    """Writes one run; every array is created up front with its final shape (spikes grow)."""

    def __init__(self, run_dir: Path, cfg: Config, attrs: dict[str, Any], probe_gids: np.ndarray) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True)
        self.root = zarr.open_group(_zarr_path(run_dir), mode="w-")
        self.root.attrs.update({"format": FORMAT, "status": "running", **attrs})
        n = cfg.n_total
        spikes = self.root.create_group("spikes")
        self.times = spikes.create_array("times_ms", shape=(0,), dtype="float64", chunks=(SPIKE_CHUNK,),
                                         dimension_names=["spike"])
        self.gids = spikes.create_array("gids", shape=(0,), dtype="int32", chunks=(SPIKE_CHUNK,),
                                        dimension_names=["spike"])
        self.n_spikes = 0
        self.dt = cfg.run.dt_ms
        self.counts = None
        if cfg.record.counts_bin_ms > 0:
            bin_ms = cfg.record.counts_bin_ms
            n_bins = -(-cfg.steps(cfg.run.t_ms) // cfg.steps(bin_ms))
            rows = max(1, min(n_bins, (1 << 22) // max(1, min(n, 4096))))
            self.counts = self.root.create_array(
                "counts", shape=(n_bins, n), dtype="uint16", chunks=(rows, min(n, 4096)),
                dimension_names=["time_bin", "neuron"], fill_value=0,
                attributes={"bin_ms": bin_ms, "interval": "right-closed: (start, start + bin_ms]"},
            )
            self.root.create_array("time_bin", data=np.arange(n_bins) * bin_ms, dimension_names=["time_bin"],
                                   attributes={"units": "ms"})
            self.root.create_array("neuron", data=np.arange(n, dtype=np.int32), dimension_names=["neuron"])
        self.probes: dict[str, Any] = {}
        if probe_gids.size:
            every = cfg.steps(cfg.record.probe_every_ms or cfg.run.dt_ms)
            n_samples = cfg.steps(cfg.run.t_ms) // every
            group = self.root.create_group("probes")
            group.create_array("time", data=(np.arange(n_samples) + 1) * every * self.dt,
                               dimension_names=["time"], attributes={"units": "ms"})
            group.create_array("probe", data=probe_gids.astype(np.int32), dimension_names=["probe"])
            units = {"v": "mV", "syn_e": "mV/ms", "syn_i": "mV/ms", "ext": "mV/ms"}
            rows = max(1, min(n_samples, (1 << 20) // probe_gids.size))
            for var in PROBE_VARS:
                self.probes[var] = group.create_array(
                    var, shape=(n_samples, probe_gids.size), dtype="float32", chunks=(rows, probe_gids.size),
                    dimension_names=["time", "probe"], fill_value=np.nan, attributes={"units": units[var]},
                )

    def append_spikes(self, steps: np.ndarray, gids: np.ndarray) -> None:
        """Append spikes emitted at `steps` (time = (step + 1) * dt), already in (time, gid) order."""
        k = steps.size
        if k == 0:
            return
        end = self.n_spikes + k
        self.times.resize((end,))
        self.gids.resize((end,))
        self.times[self.n_spikes:end] = (steps + 1) * self.dt
        self.gids[self.n_spikes:end] = gids
        self.n_spikes = end

    def write_counts(self, bin0: int, block: np.ndarray) -> None:
        if self.counts is not None and block.shape[0]:
            self.counts[bin0 : bin0 + block.shape[0]] = block

    def write_probes(self, k0: int, block: np.ndarray, cols: np.ndarray) -> None:
        """block[sample, var, probe] for samples k0.. and the probe columns `cols`."""
        if not self.probes or block.shape[0] == 0:
            return
        for v, var in enumerate(PROBE_VARS):
            self.probes[var].oindex[k0 : k0 + block.shape[0], cols] = block[:, v, :]

    def update_attrs(self, **attrs: Any) -> None:
        self.root.attrs.update(attrs)

    def close(self, status: str, **attrs: Any) -> None:
        self.root.attrs.update({**attrs, "status": status})


# ---------------------------------------------------------------- reading
@dataclass
class Run:
    """A stored run: numpy arrays and metadata (see the module docstring for the layout)."""

    path: Path
    root: zarr.Group

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.root.attrs)

    @property
    def status(self) -> str:
        return self.root.attrs["status"]

    @property
    def config(self) -> Config:
        return Config.model_validate(self.root.attrs["config"])

    @property
    def dt_ms(self) -> float:
        return float(self.root.attrs["dt_ms"])

    @property
    def t_ms(self) -> float:
        return float(self.root.attrs["t_ms"])

    @property
    def populations(self) -> dict[str, dict[str, Any]]:
        """name -> {type, n, gid0}."""
        return {p["name"]: p for p in self.root.attrs["populations"]}

    def gids_of(self, population: str) -> slice:
        p = self.populations[population]
        return slice(p["gid0"], p["gid0"] + p["n"])

    def spikes(self) -> tuple[np.ndarray, np.ndarray]:
        """(times_ms, gids), sorted by time then gid."""
        return self.root["spikes/times_ms"][:], self.root["spikes/gids"][:]

    @property
    def bin_ms(self) -> float | None:
        return float(self.root["counts"].attrs["bin_ms"]) if "counts" in self.root else None

    def counts(self, population: str | None = None) -> np.ndarray:
        """Binned spike counts (time_bin, neuron), optionally one population's columns."""
        if "counts" not in self.root:
            raise KeyError("this run recorded no counts (record.counts_bin_ms = 0)")
        arr = self.root["counts"]
        return arr[:, self.gids_of(population)] if population else arr[:]

    def probes(self) -> dict[str, np.ndarray]:
        """time (ms), probe (gids) and one (time, probe) array per variable."""
        if "probes" not in self.root:
            return {}
        g = self.root["probes"]
        return {name: g[name][:] for name in ("time", "probe", *PROBE_VARS)}


def open_run(path: str | Path, allow_incomplete: bool = False) -> Run:
    """Open RUN_DIR (or RUN_DIR/run.zarr) for reading; incomplete runs only when asked."""
    p = Path(path)
    zpath = p if p.name == "run.zarr" else _zarr_path(p)
    if not zpath.is_dir():
        raise FileNotFoundError(f"{path}: not an eilab run directory (no run.zarr inside)")
    root = zarr.open_group(zpath, mode="r")
    if root.attrs.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown run format {root.attrs.get('format')!r}")
    run = Run(zpath.parent, root)
    if run.status != "complete" and not allow_incomplete:
        raise RunNotCompleteError(
            f"{path}: run status is {run.status!r}, not 'complete'; pass allow_incomplete=True to read it anyway"
        )
    return run
