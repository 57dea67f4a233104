"""Reading stored runs: `open_run` and the `Run` reader (layout: see store.py, the writer).

This module needs only the config model, numpy and zarr: analysis, ML and search code that reads
runs does not load the writer, MPI or the engine. Reads are windowed where the arrays allow it
(`counts(pop, t0_ms, t1_ms)`, `spikes(t0_ms, t1_ms)`; the spike list is read and sorted once per
`Run`), and every read names the array when stored data is missing or damaged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from eilab.sim.config import Config

FORMAT = "eilab-run/1"
PROBE_VARS = ("v", "syn_e", "syn_i", "ext")


def bin_rows(t0_ms: float, t1_ms: float, bin_ms: float, n_bins: int) -> slice:
    """The bins of width bin_ms (ms) that start in [t0_ms, t1_ms), within n_bins: what `Run.counts` selects."""
    return slice(min(n_bins, max(0, math.ceil(t0_ms / bin_ms - 1e-9))),
                 min(n_bins, max(0, math.ceil(t1_ms / bin_ms - 1e-9))) if t1_ms < math.inf else n_bins)


class RunNotCompleteError(RuntimeError):
    pass


class RunDamagedError(ValueError):
    """Stored data is missing or corrupt; the message names the array."""


def zarr_path(run_dir: Path) -> Path:
    return run_dir / "run.zarr"


def chunk_manifest(zpath: Path) -> dict[str, dict[str, int]]:
    """Chunk files and their total bytes for every array of a store, by array path."""
    out: dict[str, dict[str, int]] = {}
    for meta in sorted(zpath.rglob("zarr.json")):
        node = meta.parent
        if json.loads(meta.read_text()).get("node_type") != "array":
            continue
        files = [f for f in (node / "c").rglob("*") if f.is_file()] if (node / "c").is_dir() else []
        out[node.relative_to(zpath).as_posix()] = {"chunks": len(files), "bytes": sum(f.stat().st_size for f in files)}
    return out


def check_manifest(zpath: Path, manifest: dict[str, dict[str, int]]) -> None:
    """Raise RunDamagedError naming the first array whose chunk files differ from the manifest."""
    found = chunk_manifest(zpath)
    for name, want in manifest.items():
        got = found.get(name)
        if got is None:
            raise RunDamagedError(f"{zpath}/{name}: array missing; the run is damaged (restore it from a copy or "
                                  "run it again)")
        if got != want:
            what = "missing chunk files" if got["chunks"] < want["chunks"] else "changed or truncated chunk files"
            raise RunDamagedError(
                f"{zpath}/{name}: {what} ({got['chunks']} chunks, {got['bytes']} bytes on disk; {want['chunks']} "
                f"chunks, {want['bytes']} bytes written); the run is damaged (restore it from a copy or run it again)")


def read_ranges(group: Any, lo: int, hi: int, name: str, counts: str | None = None,
                row: int | None = None) -> np.ndarray:
    """Values for gids [lo, hi) assembled from the per-range arrays `name` of a group (written by
    any earlier partition). With `counts`, each gid owns counts[gid] consecutive values (per-range
    in-degrees); `row` picks one row of 2-D arrays from the newest segment (resume) that wrote it."""
    subs = [group[k] for k in group.group_keys()]
    subs = [x for x in subs if name in x and x.attrs["hi"] > lo and x.attrs["lo"] < hi]
    if row is not None:
        written = [x for x in subs if not np.isnan(x[name][row]).all()]
        newest = max((x.attrs.get("segment", 0) for x in written), default=0)
        subs = [x for x in written if x.attrs.get("segment", 0) == newest]
    parts = []
    for sub in sorted(subs, key=lambda x: x.attrs["lo"]):
        a, b = sub.attrs["lo"], sub.attrs["hi"]
        data = sub[name][row] if row is not None else sub[name][...]
        if counts is None:
            parts.append(data[max(lo, a) - a : min(hi, b) - a])
        else:
            offs = np.concatenate([[0], np.cumsum(sub[counts][...], dtype=np.int64)])
            parts.append(data[offs[max(lo, a) - a] : offs[min(hi, b) - a]])
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass
class Run:
    """A stored run: numpy arrays and metadata (see the module docstring for the layout)."""

    path: Path
    root: zarr.Group
    _sorted: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.root.attrs)

    @property
    def status(self) -> str:
        return self.root.attrs["status"]

    @property
    def config(self) -> Config:
        """The resolved config, as stored (drive files are not looked up again: their samples are in the run)."""
        return Config.model_validate(self.root.attrs["config"], context={"stored": True})

    def drive_samples(self) -> dict[int, np.ndarray]:
        """The samples (pA) of each drive given as a file, by drive index, as read when the run started."""
        if "drive" not in self.root:
            return {}
        group = self.root["drive"]
        return {int(k): self.read(f"drive/{k}") for k in group.array_keys()}

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

    def spikes(self, t0_ms: float = -math.inf, t1_ms: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        """(times_ms, gids) of the spikes with t0_ms <= time < t1_ms (default: all), padding dropped,
        sorted by time then gid (the same for any rank count). The stored list is read and sorted
        once per Run; later calls are views of it."""
        if self._sorted is None:
            times, gids = self.read("spikes/times_ms"), self.read("spikes/gids")
            keep = gids >= 0
            times, gids = times[keep], gids[keep]
            order = np.lexsort((gids, times))
            self._sorted = times[order], gids[order]
        times, gids = self._sorted
        a, b = np.searchsorted(times, [t0_ms, t1_ms], side="left")
        return times[a:b], gids[a:b]

    @property
    def bin_ms(self) -> float | None:
        for name in ("counts", "rates"):
            if name in self.root:
                return float(self.root[name].attrs["bin_ms"])
        return None

    def counts(self, population: str | None = None, t0_ms: float = 0.0, t1_ms: float = math.inf) -> np.ndarray:
        """Binned spike counts (time_bin, neuron) of the bins that start in [t0_ms, t1_ms) (default: all),
        optionally one population's columns; only those chunks are read."""
        if "counts" not in self.root:
            raise KeyError("this run recorded no counts (record.counts_bin_ms = 0)")
        return self._binned("counts", population, t0_ms, t1_ms)

    def drive_counts(self, population: str | None = None, t0_ms: float = 0.0, t1_ms: float = math.inf) -> np.ndarray:
        """Poisson drive events per neuron (time_bin, neuron), binned and selected as `counts` (record.drive_counts)."""
        if "drive_counts" not in self.root:
            raise KeyError("this run recorded no drive counts (set record.drive_counts = true)")
        return self._binned("drive_counts", population, t0_ms, t1_ms)

    def rates(self, population: str | None = None, t0_ms: float = 0.0, t1_ms: float = math.inf) -> np.ndarray:
        """Rates (Hz) of a rate-network run at the end of each bin (time_bin, neuron), as `counts` selects."""
        if "rates" not in self.root:
            raise KeyError("this run has no rates (a spiking run, or record.counts_bin_ms = 0)")
        return self._binned("rates", population, t0_ms, t1_ms)

    def _binned(self, name: str, population: str | None, t0_ms: float, t1_ms: float) -> np.ndarray:
        rows = bin_rows(t0_ms, t1_ms, float(self.root[name].attrs["bin_ms"]), self.root[name].shape[0])
        return self.read(name, (rows, self.gids_of(population) if population else slice(None)))

    def weights(self, projection: str, last: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """Snapshot times (ms) and, per snapshot, the weights of a plastic projection in canonical
        order (targets by gid, each target's synapses by presynaptic index); only the last stored
        snapshot with `last`."""
        group = self.root[f"weights/{projection}"]
        times = group["times_ms"][...]
        rows = [k for k in range(times.size) if not np.isnan(times[k])][-1 if last else 0 :]
        n = int(self.attrs["n_neurons"])
        return times[rows], [read_ranges(group, 0, n, "w", counts="indegree", row=k) for k in rows]

    def probes(self) -> dict[str, np.ndarray]:
        """time (ms), probe (gids) and one (time, probe) array per variable."""
        if "probes" not in self.root:
            return {}
        return {name: self.read(f"probes/{name}") for name in ("time", "probe", *PROBE_VARS)}

    def read(self, name: str, selection: Any = slice(None)) -> np.ndarray:
        """array[selection] of the store, or RunDamagedError naming the array when a chunk cannot be decoded
        (a checksum mismatch or a truncated file)."""
        try:
            return self.root[name][selection]
        except MemoryError:
            raise
        except Exception as e:
            raise RunDamagedError(f"{self.path}/run.zarr/{name}: a chunk cannot be read ({type(e).__name__}: "
                                  f"{str(e)[:120]}); the run is damaged (restore it from a copy or run it "
                                  "again)") from None


def open_run(path: str | Path, allow_incomplete: bool = False) -> Run:
    """Open RUN_DIR (or RUN_DIR/run.zarr) for reading; incomplete runs only when asked."""
    p = Path(path)
    zpath = p if p.name == "run.zarr" else zarr_path(p)
    if not zpath.is_dir():
        raise FileNotFoundError(f"{path}: not an eilab run directory (no run.zarr inside)")
    try:
        root = zarr.open_group(zpath, mode="r")
        attrs = dict(root.attrs)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise RunDamagedError(f"{zpath}/zarr.json: the run's metadata cannot be read ({type(e).__name__}); "
                              "the run is damaged") from None
    if attrs.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown run format {attrs.get('format')!r}")
    run = Run(zpath.parent, root)
    if run.status != "complete" and not allow_incomplete:
        raise RunNotCompleteError(
            f"{path}: run status is {run.status!r}, not 'complete'; pass allow_incomplete=True to read it anyway"
        )
    if run.status == "complete":
        check_manifest(zpath, attrs.get("manifest", {}))
    return run
